#!/usr/bin/env bash
# The main job end to end: set up, train Mult-VAE on MovieLens 100K (strong generalization, the
# paper's settings), print the test metrics, then recommend for a known user and for a new history.
# ML-100K is read from $AEREC_DATA_DIR/ml-100k when present, else downloaded from GroupLens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
run=${RUN_DIR:-runs/quickstart-mult-vae}
rm -rf "$run"
.venv/bin/aerec train --data ml-100k --model mult-vae --out "$run" ${AEREC_QUICKSTART_ARGS:-}
echo
echo "== recommendations for user 1 of ML-100K"
.venv/bin/aerec recommend "$run" --user 1 -n 10
echo
echo "== recommendations for someone who liked Star Wars, Return of the Jedi and Toy Story"
.venv/bin/aerec recommend "$run" --items 50,181,1 -n 10
