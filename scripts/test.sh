#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a developer's: installs what is missing (apt, pip,
# Maven), runs the static checks, then every test. Unit tests need no services; the integration
# tests bring the real local stack up (PostgreSQL, Kafka KRaft, Connect + Debezium) themselves.
# A stack this script started is stopped again at the end; one that was already running stays up.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
V=.venv/bin

echo "==> ruff";        $V/ruff check . && $V/ruff format --check .
echo "==> mypy";        $V/mypy
echo "==> layering";    $V/lint-imports

started_stack=0
if ! $V/goldstream stack status >/dev/null 2>&1; then started_stack=1; fi
cleanup() { if [ "$started_stack" = 1 ]; then $V/goldstream stack down || true; fi; }
trap cleanup EXIT

echo "==> pytest (unit + integration)"
$V/python -m pytest tests -q -p no:cacheprovider "$@"
