#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install what hypalign needs.
#
#   bash scripts/setup.sh [--extras text,io,dev] [--data]
#
# * .venv/ (Python >= 3.11) is created once and reused;
# * torch 2.13.0 is installed first, from the local CPU wheel (a looser pin would pull CUDA wheels);
# * hypalign is installed in editable mode with the requested extras (skipped when nothing changed);
# * --data installs Debian's data packages: wordnet-base (WordNet 3.0) and metastudent-data
#   (Swiss-Prot + Gene Ontology, ~225 MB download), and the sequence tools the protein splits and
#   baselines run: mmseqs2 and diamond-aligner.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
want_data=0
while [ $# -gt 0 ]; do
  case "$1" in
    --extras) extras="$2"; shift 2 ;;
    --extras=*) extras="${1#--extras=}"; shift ;;
    --data) want_data=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }

# ---- Debian packages ----------------------------------------------------------------------------
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { say "Debian packages present: $*"; return 0; }
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "need root (or sudo) to apt-get install ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$want_data" = 1 ]; then
  apt_install wordnet-base metastudent-data mmseqs2 diamond-aligner
fi

# ---- Python environment -------------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "Python >= 3.11 required"; exit 1; }
  say "creating virtual environment .venv ($("$PY" --version))"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$VPY" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' 2>/dev/null; then
  say "installing torch 2.13.0 (CPU wheel)"
  "$VPY" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VPY" -W ignore -c 'import torch' 2>/dev/null || { say "torch failed to install"; exit 1; }
fi

spec="."
[ -n "$extras" ] && spec=".[${extras}]"
stamp=.venv/.hypalign-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp" || ! "$VPY" -c 'import hypalign' 2>/dev/null; then
  say "installing hypalign (editable) with extras: ${extras:-none}"
  "$VPY" -m pip install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" >&2 || true
  "$VPY" -c 'import hypalign' || { say "hypalign failed to install"; exit 1; }
  # a dependency asking for a looser torch must not have replaced the CPU wheel
  "$VPY" -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' \
    || { say "torch was replaced by $("$VPY" -c 'import torch; print(torch.__version__)'); aborting"; exit 1; }
  echo "$want" >> "$stamp"
else
  say "hypalign already installed with extras: ${extras:-none}"
fi
