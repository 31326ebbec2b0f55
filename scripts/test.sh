#!/usr/bin/env bash
# Run the whole test suite (installs what the tests need first: venv, torch CPU, test extras,
# Debian's wordnet-base, metastudent-data, mmseqs2 and diamond-aligner for the real-data tests).
#   bash scripts/test.sh              # default suite (no `slow` tests), well under 15 minutes on 2 cores
#   bash scripts/test.sh -m slow      # only the slow checks;  -m "" runs everything
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --extras dev,text,io,viz,vision,bio,structure,chem --data
echo "[test] ruff check" >&2
.venv/bin/ruff check src tests benchmarks
echo "[test] pytest $*" >&2
exec .venv/bin/python -m pytest "$@"
