#!/usr/bin/env bash
# The main job on its embedded default: installs what it needs (venv, torch CPU, MiniLM,
# Debian's wordnet-base and metastudent-data), then runs `hypalign quickstart`.
# Extra arguments go to `hypalign quickstart` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --extras text,io --data
echo "[main-job] hypalign quickstart $*" >&2
exec .venv/bin/hypalign quickstart "$@"
