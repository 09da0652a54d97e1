#!/usr/bin/env bash
# Reproduce the shipped VBF H->mumu DNN (flashsim_coffea/models/dnn/) with one command:
#   scripts/train_dnn.sh [WORKDIR]        (default WORKDIR: ./dnn-samples)
# Generates the reference-simulated samples with fixed seeds (skipped when already present;
# same seed and -n give bit-identical files), then trains with a fixed seed.
# Runtime on one free CPU core: ~8 min for the VBF/EWK/ttbar samples, ~40 min for DY (the VBF
# Gen filter keeps ~1.6 % of the DY events; ~7 GB of memory per 500 accepted DY events), and
# under a minute of training. WORKERS=N speeds up generation without changing the events.
set -euo pipefail
WORK="${1:-dnn-samples}"
WORKERS="${WORKERS:-1}"
OUT="${OUT:-$(cd "$(dirname "$0")/.." && pwd)/flashsim_coffea/models/dnn}"
mkdir -p "$WORK"

gen() {  # gen FILE PROCESS N SEED [extra args]
    local file="$WORK/$1"; shift
    if [ -f "$file" ]; then echo "have $file"; return; fi
    flashsim generate "$1" -n "$2" --seed "$3" --workers "$WORKERS" -o "$file" "${@:4}"
}
gen vbf_hmm.root       vbf_hmm      6000  5101
gen vbf_hmm_2.root     vbf_hmm      6000  5111
gen ewk_mumujj.root    ewk_mumujj   6000  5102
gen ewk_mumujj_2.root  ewk_mumujj  12000  5112
gen ttbar.root         ttbar       10000  5104
gen dy.root            dy            800  5103 --filter vbf
gen dy_2.root          dy           1600  5113 --filter vbf

flashsim train-dnn --seed 1 --epochs 100 -o "$OUT" \
    --signal "$WORK/vbf_hmm.root" "$WORK/vbf_hmm_2.root" \
    --background "$WORK/dy.root" "$WORK/dy_2.root" "$WORK/ewk_mumujj.root" "$WORK/ewk_mumujj_2.root" "$WORK/ttbar.root"
