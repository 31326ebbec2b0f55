#!/usr/bin/env bash
# The main job on its embedded default: ProtCLIP on Swiss-Prot + Gene Ontology (Debian metastudent-data).
# Installs what it needs (venv, torch CPU, MiniLM, metastudent-data, mmseqs2, diamond-aligner), trains the
# CPU default (dilated residue CNN, Lorentz space, 3 epochs) on the small-hard split (no test protein
# >= 30 % identical to a training one), then prints the split's table: the model against term frequency,
# DIAMOND, DIAMOND blended with frequency, and model + DIAMOND.
#
#   bash scripts/main-job.sh                      # runs/main-protclip (resumes it if killed; re-scores it if done)
#   bash scripts/main-job.sh --geometry sphere    # extra arguments go to `hypalign train protclip`
#   HYPALIGN_MAIN_RUN=runs/other bash scripts/main-job.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --extras text,io,bio --data
run=${HYPALIGN_MAIN_RUN:-runs/main-protclip}
hyp=.venv/bin/hypalign
say() { printf '[main-job] %s\n' "$*" >&2; }
if [ -f "$run/eval.json" ] && [ -f "$run/model/model.safetensors" ]; then
  say "$run has finished training (delete it to train again); scoring it against the baselines"
elif [ -d "$run/latest" ]; then
  say "resuming $run from its last checkpoint: hypalign train protclip -o $run --resume --eval-every 0 $*"
  "$hyp" train protclip -o "$run" --resume --eval-every 0 "$@"
else
  say "hypalign train protclip --split small-hard -o $run --eval-every 0 $*"
  say "(first run: reads Swiss-Prot, makes the split with mmseqs2 and DIAMOND, encodes the GO term names;"
  say " then ~26 min of training and ~5 min fitting the nearest-neighbour transfer on 2 cores; ~46 min in all)"
  "$hyp" train protclip --split small-hard -o "$run" --eval-every 0 "$@"
fi
say "hypalign protein baselines --run $run  (DIAMOND on the valid and test proteins, ~5 min)"
exec "$hyp" protein baselines --run "$run"
