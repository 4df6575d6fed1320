#!/usr/bin/env bash
# Same-session comparison of the e2e propagation bench: this working tree's flows/core/config against
# those of BASE (a commit), alternated BASE, HEAD, BASE, HEAD, ... so both see the same machine.
#   bench/propagation/compare.sh BASE [RUNS] [OUTDIR]
# Needs a running, seeded stack with connectors applied (goldstream stack up, demo seed,
# connectors apply). Leaves flows/ core/ config/ as they were in HEAD's commit at the end.
set -euo pipefail
base=${1:?usage: compare.sh BASE_COMMIT [RUNS] [OUTDIR]}
runs=${2:-3}
out=${3:-.state/bench/compare}
cd "$(dirname "$0")/../.."
if ! git diff --quiet -- flows core config; then
  echo "compare.sh: flows/ core/ config/ have uncommitted changes; commit or stash them first" >&2
  exit 2
fi
mkdir -p "$out"
trap 'git checkout -q HEAD -- flows core config' EXIT
for i in $(seq 1 "$runs"); do
  for side in base head; do
    if [ "$side" = base ]; then git checkout -q "$base" -- flows core config; else git checkout -q HEAD -- flows core config; fi
    .venv/bin/python -m bench.propagation --customers 5000 --rounds 3 --rate 1000 --crm-api own \
      --out "$out/$side-$i.json" > "$out/$side-$i.log" 2>&1
    echo "$side run $i done $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
