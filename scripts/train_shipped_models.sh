#!/usr/bin/env bash
# Reproduce the shipped FlashSim models flashsim_coffea/models/{jets,muons} (fixed seeds).
#
#   scripts/train_shipped_models.sh [TRAIN_DIR] [WORK_DIR]
#
# TRAIN_DIR holds NanoAOD training files written by `flashsim generate` (Gen + reference reco):
#   ttbar*.root (jets: >= 500k matched tt̄ jets; muons) and dy*.root (muons), e.g.
#     flashsim generate ttbar -n 80000 --seed 1001 -o TRAIN_DIR/ttbar.root
#     flashsim generate dy    -n 40000 --seed 1002 -o TRAIN_DIR/dy.root
# Steps (each resumable; THREADS torch threads per job, default 1; both jobs run in parallel):
#   1. pre-training data: synthetic Gen events through the reference response (numpy, fast)
#   2. pre-train each flow on it (--epochs/--max-minutes below)
#   3. extract the generated training files, fine-tune from the pre-trained model (--init)
#   4. copy card.json + model.safetensors of the best epoch into the package
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_DIR=${1:-/work/scratch/train}
WORK=${2:-/work/scratch/flows}
THREADS=${THREADS:-1}
PRE_MINUTES=${PRE_MINUTES:-55}
FT_MINUTES=${FT_MINUTES:-45}
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS

# 1. synthetic pre-training data (seeds fixed)
[ -f "$WORK/synth_jets.npz" ]  || flashsim extract jets  --synthetic 600000 --gen-seed 1 --ref-seed 11 -o "$WORK/synth_jets.npz" --no-progress
[ -f "$WORK/synth_muons.npz" ] || flashsim extract muons --synthetic 400000 --gen-seed 1 --ref-seed 11 -o "$WORK/synth_muons.npz" --no-progress

# 3a. generated training data
shopt -s nullglob
TT=("$TRAIN_DIR"/ttbar*.root)
DY=("$TRAIN_DIR"/dy*.root)
[ ${#TT[@]} -gt 0 ] || { echo "no $TRAIN_DIR/ttbar*.root: generate it first (see the header)"; exit 2; }
[ -f "$WORK/tt_jets.npz" ]   || flashsim extract jets  "${TT[@]}" -o "$WORK/tt_jets.npz" --no-progress
[ -f "$WORK/ttdy_muons.npz" ] || flashsim extract muons "${TT[@]}" "${DY[@]}" -o "$WORK/ttdy_muons.npz" --no-progress

train_one() {  # spec, pre-training data, training data
  local spec=$1 pre=$2 data=$3
  # 2. pre-training (resumes if interrupted)
  flashsim train "$spec" --data "$pre" -o "$WORK/pre_$spec" --threads "$THREADS" --epochs 40 --patience 6 \
    --max-minutes "$PRE_MINUTES" --seed 1 --resume --no-progress
  # 3b. fine-tuning on the generated events
  flashsim train "$spec" --data "$data" -o "$WORK/ft_$spec" --init "$WORK/pre_$spec" --threads "$THREADS" \
    --epochs 30 --patience 5 --lr 1e-3 --max-minutes "$FT_MINUTES" --seed 2 --resume --no-progress
  # 4. ship
  mkdir -p "flashsim_coffea/models/$spec"
  cp "$WORK/ft_$spec/card.json" "$WORK/ft_$spec/model.safetensors" "flashsim_coffea/models/$spec/"
}

train_one jets  "$WORK/synth_jets.npz"  "$WORK/tt_jets.npz"   > "$WORK/train_jets.log" 2>&1 &
train_one muons "$WORK/synth_muons.npz" "$WORK/ttdy_muons.npz" > "$WORK/train_muons.log" 2>&1 &
wait
echo "shipped: flashsim_coffea/models/jets, flashsim_coffea/models/muons"
