#!/usr/bin/env bash
# On a lent GPU machine, from a copy of this checkout: unpack the archive of scripts/gpu_packages.sh, put this
# checkout and it on PYTHONPATH with a `jaxdqn` command on PATH, then run scripts/gpu_check.sh's SECTIONs.
# Results go to OUT_DIR (default $OUT/results when the machine gives an OUT folder, else benchmarks/results);
# with OUT set they are also packed into $OUT/results.tgz after each section, so that a run stopped at its time
# limit still returns what finished.
#
# Usage: scripts/gpu_run.sh [SECTION ...]   (default: every section; ARCHIVE, PYTHON: default
#        .gpu/site312.tgz and python3)
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
archive=${ARCHIVE:-.gpu/site312.tgz}
out=${OUT_DIR:-${OUT:+$OUT/results}}
out=${out:-benchmarks/results}
site=$(mktemp -d); bin=$(mktemp -d)
tar -xzf "$archive" -C "$site" || exit 3
export PYTHONPATH="$site:$PWD" PATH="$bin:$PATH" PYTHONUNBUFFERED=1
printf '#!/bin/sh\nexec %s -c "import sys; from jaxdqn.cli import main; sys.exit(main())" "$@"\n' "$python" >"$bin/jaxdqn"
chmod +x "$bin/jaxdqn"
mkdir -p "$out"
[ $# -gt 0 ] || set -- peers agents bench breakout capacity curves
for section in "$@"; do
  PYTHON=$python OUT_DIR=$out bash scripts/gpu_check.sh "$section"
  echo "== $section: exit $?"
  [ -z "${OUT:-}" ] || tar -czf "$OUT/results.tgz" -C "$out" .
done
