#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, brings the local stack up, seeds
# the four demo systems, applies the Debezium connectors, runs the ingest dataflow (bronze, silver,
# entity resolution, gold) and the propagation flow (golden records -> CRM, ERP) under a demo load
# and shows every layer filling. Ctrl-C stops the dataflows (the stack stays up;
# `.venv/bin/goldstream stack down` stops it). Extra arguments go to `goldstream demo run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/goldstream demo run "$@"
