#!/usr/bin/env bash
# Reproduce the shipped FlashSim models flashsim_coffea/models/{jets,muons} (fixed seeds, one
# torch thread per job, as they were made; ~6 h on 2 busy CPU cores).
#
#   scripts/train_shipped_models.sh [TRAIN_DIR] [DY_DIR] [WORK_DIR]
#
# Inputs: NanoAOD files from `flashsim generate` (only their Gen collections are used: the
# reco objects are re-drawn with the current reference response, seeds 101 and 102):
#   TRAIN_DIR/ttbar.root   flashsim generate ttbar -n 80000 --seed 1001 -o ttbar.root
#   TRAIN_DIR/ttbar2.root  flashsim generate ttbar -n 12000 --seed 1004 -o ttbar2.root
#   DY_DIR/dy.root         flashsim generate dy    -n 60000 --seed 1002 -o dy.root
#   DY_DIR/dy2.root        flashsim generate dy    -n 40000 --seed 1003 -o dy2.root
#   DY_DIR/dy3.root        flashsim generate dy    -n 15000 --seed 1005 -o dy3.root
# Held-out validation files (HELDOUT_DIR): ttbar.root (-n 10000 --seed 2001), dy.root (5000, 2002),
# vbf_hmm.root (5000, 2003), and ttbar_b.root (20000, 2004), dy_b.root (10000, 2005),
# vbf_hmm_b.root (10000, 2006): each validation reads both files of its process.
#
# Stages, exactly as the shipped models were trained (with the validation split by row, as then:
# `--split row`; the default is now by event):
#   muons: pre-train on synthetic Gen + reference (8 epochs of 150k), fine-tune on 359k
#          tt + DY muons (28 epochs of 150k, cosine LR from 1.5e-3), both with the first spec
#          ("v1": ip3d, sip3d as raw targets); then the current spec (ip3d, sip3d relative to
#          their 2-D decomposition, relation "scaled") from those weights on 1.2M tt + DY muons
#          (6 reference draws, seeds 101-106, + dy3.root), event split: 30 epochs of 300k,
#          LR 1e-3, then 30 more at LR 3e-4 (spec "rev2"); then the current spec (Δη, Δφ fill
#          the NanoAOD rounding cells of the reco η, φ: dequantize "rounding") from those
#          weights on the same muons re-extracted: 30 epochs of 300k, LR 5e-4 (2 threads), then
#          30 more at LR 2e-4 and 30 at LR 1e-4.
#   jets:  the first three stages used an earlier revision of the spec ("rev1": area as a
#          continuous variable), rebuilt below as a JSON spec: pre-train (6 epochs), fine-tune
#          on 1.0M tt jets (24 epochs, LR 1.5e-3) and again (LR 6e-4, stopped after epoch 9);
#          then area on the ghost-area lattice starting from those weights (preprocessing
#          refitted): 40 epochs of 150k, LR 1e-3; then the current spec (puId/jetId
#          quantile-dequantized): 30 epochs of 300k, LR 3e-4; then on 1.63M tt + DY jets (DY
#          adds jets made of prompt muons, jetId = 2): 20 epochs of 300k, LR 2e-4, 2 threads;
#          then 2 × 30 more at LR 5e-5 (same seed, so the same validation rows) — all these with
#          the taggers and qgl as their values (spec "rev2"); then the current spec (taggers and
#          qgl as logits) from those weights: 60 epochs of 300k, LR 5e-4, then 40 at LR 1.5e-4
#          and 30 at 1e-4 (2 threads; --split-seed 11 keeps the validation rows of the earlier
#          stages).
#          Then the current spec (one more conditioning feature: the Gen activity around the muon,
#          ClosestGenJet_activity) from those weights (zero weights on the new context column,
#          flows/train.py extend_context) on 603k tt + DY muons of new Gen files (ACT_DIR: dy.root
#          = `flashsim generate dy -n 60000 --seed 1002 --no-reference`, ttbar.root = `flashsim
#          generate ttbar -n 40000 --seed 1001 --no-reference`; 6 reference draws, seeds 101-106),
#          flow and head together, three stages (same validation events, --split-seed 7): 16 epochs
#          of 300k at LR 1e-4, 40 at 2e-4, 30 at 1e-4 (val NLL 7.86 of the initial weights on these
#          events → 7.47 → 7.13 → 7.04), head 8 epochs each; ~55 min on 2 cores. Those stages use the
#          spec with the pT response and dphi encoded as arctan(10 (r - 1)), arctan(80 dphi)
#          ("muons_act.json"); then the pT response as asinh(100 (r - 1)) ("muons_a100.json"), then
#          the current spec (asinh(40 (r - 1)), asinh(1500 dphi): their standardised tails inside the
#          spline range), each on the same muons re-extracted, 40 epochs of 300k at LR 2e-4 (val NLL
#          6.89, 6.90 in those encodings), head 8 epochs; ~35 min each on 2 cores. These stages use
#          the spec without its last conditioning feature ("muons31.json"); then the current spec
#          (+ the distance to the GenJet-minus-muon axis, ClosestGenJet_dr_rest, zero-initialised)
#          on the same muons re-extracted: 40 epochs of 300k at LR 2e-4, then 40 at 1e-4 (val NLL
#          6.90 → 6.62 → 6.55), head 8 epochs each; ~32 min each on 2 cores.
#   appended (the NanoAOD fields after the first targets; objects/jets.py and objects/muons.py
#          APPENDED_TARGETS, objects/pileup_jets.py): from the models of the stages above, each spec
#          appends targets — jets rawFactor and the energy shares chHEF, neHEF, chEmEF (+ the
#          conditioning feature Pileup_nTrueInt, zero-initialised), muons tightId, highPtId,
#          miniPFRelIso_all, tkRelIso, pile-up jets the jets' four — learned by 4 new coupling layers
#          on top of the frozen trained ones (`flashsim train --init MODEL --freeze-init`), then the
#          discrete head over all classified targets. Inputs (APP_DIR, Gen only, re-drawn with the
#          current reference): ttbar.root = `flashsim generate ttbar -n 30000 --seed 1001 --no-reference`,
#          dy.root = `flashsim generate dy -n 40000 --seed 1002 --no-reference` (626k jets, 411k muons). Jets: 2 reference draws
#          (101, 102), muons 6 (101-106); 20 epochs of 200k at LR 1e-3 (cosine), head 8 epochs, one
#          thread each, then for the jets the extension layers alone 25 more epochs at LR 5e-4;
#          pile-up jets: 300k pile-up-only events (gen seed 3, reference seed 13), 12 epochs of 100k,
#          then 30 more at 7e-4, head 6 epochs, the count model kept. ~45 min on 2 cores. Alone, from the
#          shipped models: ONLY=appended APP_DIR=... scripts/train_shipped_models.sh
#   both:  a discrete head (flows/head.py) for the classified targets (jets: puId, jetId; muons:
#          the six ID booleans) trained on top of the final flow (--head-only, 12 epochs).
#   pileup_jets (Jet_genJetIdx = -1; objects/pileup_jets.py): needs no input file — 1M pile-up-only
#          events (the generator's Pileup_* profile, gen seeds 1000-1009, no Gen objects: the
#          reference's pile-up jets depend on nothing else) through the reference response (seed
#          11): 1.4M pile-up jets; the count model P(n | nTrueInt) (count.json) from all 1M events,
#          the flow ("small", 90k parameters) on 400k of the jets: 24 epochs of 60k, LR 2e-3, then
#          30 epochs of 100k from those weights, LR 7e-4 (same validation events), each followed by
#          the discrete head (puId, jetId), 6 epochs; ~7 CPU-minutes on one thread (12.5 min wall
#          on a shared 2-core machine). Alone:
#            ONLY=pileup_jets scripts/train_shipped_models.sh [TRAIN_DIR] [DY_DIR] [WORK_DIR]
#          (also writes its validation report, flashsim_coffea/models/pileup_jets/validation/).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_DIR=${1:-train-data/train}
DY_DIR=${2:-train-data/train}
WORK=${3:-train-data/flows}
mkdir -p "$WORK"
export OMP_NUM_THREADS=1
T="--threads 1 --no-progress"

pileup_jets() {
  python - "$WORK" <<'PY'
import sys
from flashsim_coffea.flows.count import fit_unmatched
from flashsim_coffea.flows.data import save_data
from flashsim_coffea.objects import get_spec
from flashsim_coffea.objects.extract import extract_pileup_synthetic
from flashsim_coffea.objects.pileup_jets import COUNT_EDGES, COUNT_FEATURE
work, spec = sys.argv[1], get_spec("pileup_jets")
data, prov = extract_pileup_synthetic(spec, 1_000_000, gen_seed=1, ref_seeds=[11])
o = data.objects
save_data(f"{work}/pileup_jets.npz", o.cond, o.targets, o.keys, o.gen, prov)
fit_unmatched(spec, data, COUNT_FEATURE, COUNT_EDGES).save(f"{work}/pileup_jets_count")
print(f"pileup_jets: {len(o)} pile-up jets of {len(data.counts)} events")
PY
  flashsim train pileup_jets "$WORK/pileup_jets.npz" -o "$WORK/pileup_jets" --arch small --max-objects 400000 \
    --epochs 24 --epoch-size 60000 --patience 8 --lr 2e-3 --head-epochs 6 --seed 1 $T
  flashsim train pileup_jets "$WORK/pileup_jets.npz" -o "$WORK/pileup_jets2" --init "$WORK/pileup_jets" --arch small \
    --max-objects 400000 --epochs 30 --epoch-size 100000 --patience 8 --lr 7e-4 --head-epochs 6 --seed 2 --split-seed 1 $T
  mkdir -p flashsim_coffea/models/pileup_jets
  cp "$WORK/pileup_jets2/card.json" "$WORK/pileup_jets2/model.safetensors" "$WORK/pileup_jets_count/count.json" \
    flashsim_coffea/models/pileup_jets/
  # validation: 200k held-out pile-up events (gen seed 2000), reference R and R' seeds 201, 202
  flashsim validate pileup_jets --model flashsim_coffea/models/pileup_jets \
    -o flashsim_coffea/models/pileup_jets/validation --events 200000 --gen-seed 2 --resimulate 201 --ref-seed 202 --force
}
if [[ "${ONLY:-}" == pileup_jets ]]; then
  pileup_jets
  exit 0
fi
appended() {
  local APP=${APP_DIR:-train-data/appended} M=flashsim_coffea/models
  flashsim extract jets  "$APP/ttbar.root" "$APP/dy.root" --resimulate 101 102 -o "$WORK/jets_app.npz" --no-progress --force
  flashsim extract muons "$APP/ttbar.root" "$APP/dy.root" --resimulate 101 102 103 104 105 106 -o "$WORK/muons_app.npz" \
    --no-progress --force
  python - "$WORK" <<'PY'
import sys
from flashsim_coffea.flows.data import save_data
from flashsim_coffea.objects import get_spec
from flashsim_coffea.objects.extract import extract_pileup_synthetic
work, spec = sys.argv[1], get_spec("pileup_jets")
data, prov = extract_pileup_synthetic(spec, 300_000, gen_seed=3, ref_seeds=[13])
o = data.objects
save_data(f"{work}/pileup_jets_app.npz", o.cond, o.targets, o.keys, o.gen, prov)
PY
  local A="--freeze-init --append-layers 4 --lr 1e-3 --patience 6 --seed 27 --force $T"
  flashsim train jets "$WORK/jets_app.npz" -o "$WORK/jets_app" --init $M/jets $A --epochs 20 --epoch-size 200000 --head-epochs 8
  flashsim train muons "$WORK/muons_app.npz" -o "$WORK/muons_app" --init $M/muons $A --epochs 20 --epoch-size 200000 --head-epochs 8
  flashsim train pileup_jets "$WORK/pileup_jets_app.npz" -o "$WORK/pileup_jets_app" --init $M/pileup_jets $A --epochs 12 \
    --epoch-size 100000 --head-epochs 6
  # then the extension layers alone further (--freeze-init on a model of the same spec), same validation rows
  local C="--freeze-init --seed 28 --split-seed 27 --force $T"
  flashsim train jets "$WORK/jets_app.npz" -o "$WORK/jets_app2" --init "$WORK/jets_app" $C --lr 5e-4 --patience 6 --epochs 25 \
    --epoch-size 200000 --head-epochs 8
  flashsim train pileup_jets "$WORK/pileup_jets_app.npz" -o "$WORK/pileup_jets_app2" --init "$WORK/pileup_jets_app" $C --lr 7e-4 \
    --patience 8 --epochs 30 --epoch-size 100000 --head-epochs 6
  for s in jets_app2:jets muons_app:muons pileup_jets_app2:pileup_jets; do  # the efficiency maps and the count model stay
    cp "$WORK/${s%%:*}/card.json" "$WORK/${s%%:*}/model.safetensors" "$M/${s##*:}/"
  done
}
if [[ "${ONLY:-}" == appended ]]; then
  appended
  exit 0
fi
TT=("$TRAIN_DIR/ttbar.root")
MU=("$TRAIN_DIR/ttbar.root" "$TRAIN_DIR/ttbar2.root" "$DY_DIR/dy.root" "$DY_DIR/dy2.root")
MU6=("${MU[@]}" "$DY_DIR/dy3.root")

# the flows were trained with the specs without `classify` flags (the discrete heads come last,
# stage 1c) and the jets' first stages with earlier revisions: "rev1" (area continuous) and
# the uniform-dequantization variant (ordinals as k + u − ½)
python - "$WORK" <<'PY'
import sys
from dataclasses import replace
from flashsim_coffea.objects import Arctan, Identity, Spike, Target, get_spec
from flashsim_coffea.objects.transforms import Log, Log1p
work = sys.argv[1]
for name in ("jets", "muons"):
    spec = get_spec(name)
    if name == "muons":  # every stage before the last: without the distance to the GenJet-minus-muon axis (appended last)
        assert spec.conditioning[-1].name == "ClosestGenJet_dr_rest"
        spec = replace(spec, conditioning=spec.conditioning[:-1],
                       description="Run-2 NanoAOD muons: 31 Gen-muon conditioning features -> 22 Muon targets")
        open(f"{work}/muons31.json", "w").write(spec.to_json())
        print("muons (31 conditioning features) spec hash", spec.hash()[:12])  # 990d6a177752
    if name == "muons":  # the activity stages: pT response and dphi as arctan(10 (r - 1)), arctan(80 dphi) (now asinh)
        assert type(spec.targets[spec.target_names.index("ptRatio")].transform).__name__ == "Asinh"
        arctan = {"ptRatio": Arctan(scale=10.0, shift=1.0), "phiMinusGen": Arctan(scale=80.0)}
        spec = replace(spec, targets=tuple(replace(t, transform=arctan[t.name]) if t.name in arctan else t
                                           for t in spec.targets))
        open(f"{work}/muons_act.json", "w").write(spec.to_json())
        print("muons (arctan pT response) spec hash", spec.hash()[:12])  # 7dedfd2950cd
        from flashsim_coffea.objects import Asinh
        a100 = replace(spec, targets=tuple(replace(t, transform=Asinh(scale=100.0, shift=1.0)) if t.name == "ptRatio" else t
                                           for t in spec.targets))
        open(f"{work}/muons_a100.json", "w").write(a100.to_json())
        print("muons (asinh(100 (r - 1)) pT response) spec hash", a100.hash()[:12])  # 4eb63c171136
    if name == "muons":  # every stage before those: without the Gen activity feature (appended last)
        assert spec.conditioning[-1].name == "ClosestGenJet_activity"
        spec = replace(spec, conditioning=spec.conditioning[:-1],
                       description="Run-2 NanoAOD muons (seed set): 30 Gen-muon conditioning features -> 22 Muon targets")
        open(f"{work}/muons30.json", "w").write(spec.to_json())
        print("muons (30 conditioning features) spec hash", spec.hash()[:12])  # 8b3252148766
    flow = replace(spec, targets=tuple(replace(t, classify=False) for t in spec.targets))
    open(f"{work}/{name}_flow.json", "w").write(flow.to_json())
    print(name, "flow spec hash", flow.hash()[:12])
    if name == "muons":  # rev2: Δη, Δφ as the file's (lattice-valued) differences, no rounding cells
        rev2 = replace(flow, targets=tuple(replace(t, dequantize="uniform") for t in flow.targets))
        open(f"{work}/muons_rev2.json", "w").write(rev2.to_json())
        print("muons rev2 spec hash", rev2.hash()[:12])  # 6b1d4077e809
    if name == "muons":  # v1: ip3d and sip3d as raw targets, no rounding cells
        v1 = replace(rev2, targets=tuple(
            Target("ip3d", "ip3d", transform=Log(eps=1e-3), bounds=(0.0, 100.0)) if t.name == "ip3d" else
            Target("sip3d", "sip3d", transform=Log1p(), bounds=(0.0, 1e5)) if t.name == "sip3d" else t
            for t in rev2.targets))
        open(f"{work}/muons_v1.json", "w").write(v1.to_json())
        print("muons v1 spec hash", v1.hash()[:12])  # b203a6a8fc1a
    if name == "jets":  # rev2: taggers and qgl as their values (identity), as until lg1
        def identity(t):
            if type(t.transform).__name__ != "Logit":
                return t
            if t.name == "btagCMVA":
                return replace(t, transform=Identity(), spike=Spike(-1.0, lo=-2.5, hi=-1.5, cut=-1.25))
            return replace(t, transform=Identity(), spike=Spike(t.spike.value, lo=-1.5, hi=-0.5, cut=-0.25, below=True))
        rev2 = replace(flow, targets=tuple(identity(t) for t in flow.targets))
        open(f"{work}/jets_rev2.json", "w").write(rev2.to_json())
        print("jets rev2 spec hash", rev2.hash()[:12])  # 567c51528068
        uniform = replace(rev2, targets=tuple(replace(t, dequantize="uniform") for t in rev2.targets))
        open(f"{work}/{name}_uniform.json", "w").write(uniform.to_json())
        print(name, "uniform spec hash", uniform.hash()[:12])  # 4e85ea1f3e1c
        rev1 = replace(uniform, targets=tuple(Target("area", "area", bounds=(0.0, 2.0)) if t.name == "area" else t
                                              for t in uniform.targets))
        open(f"{work}/jets_rev1.json", "w").write(rev1.to_json())
        print("jets rev1 spec hash", rev1.hash()[:12])  # 173c476ee6cd
PY
REV1="$WORK/jets_rev1.json"
JU="$WORK/jets_uniform.json"
JF="$WORK/jets_flow.json"
JR2="$WORK/jets_rev2.json"
MF="$WORK/muons_flow.json"
MV1="$WORK/muons_v1.json"
MR2="$WORK/muons_rev2.json"

# 1. training data
flashsim extract "$REV1" --synthetic 600000 --gen-seed 1 --ref-seed 11 -o "$WORK/synth_jets.npz" --no-progress
flashsim extract "$MV1"  --synthetic 400000 --gen-seed 1 --ref-seed 11 -o "$WORK/synth_muons.npz" --no-progress
flashsim extract "$REV1" "${TT[@]}" --resimulate 101 102 -o "$WORK/tt_jets.npz" --no-progress
flashsim extract "$JR2"  "${TT[@]}" --resimulate 101 102 -o "$WORK/tt_jets_v2.npz" --no-progress
flashsim extract "$JR2"  "$TRAIN_DIR/ttbar.root" "$DY_DIR/dy.root" "$DY_DIR/dy2.root" --resimulate 101 102 \
    -o "$WORK/ttdy_jets.npz" --no-progress
# the same jets for the current spec (extraction does not depend on transforms, but the data
# carry the hash of the spec they were extracted for)
flashsim extract jets    "$TRAIN_DIR/ttbar.root" "$DY_DIR/dy.root" "$DY_DIR/dy2.root" --resimulate 101 102 \
    -o "$WORK/ttdy_jets_lg.npz" --no-progress
flashsim extract "$MV1"  "${MU[@]}" --resimulate 101 102 -o "$WORK/ttdy_muons.npz" --no-progress
flashsim extract "$MR2"  "${MU6[@]}" --resimulate 101 102 103 104 105 106 -o "$WORK/ttdy_muons_x6.npz" --no-progress
flashsim extract "$MF"  "${MU6[@]}" --resimulate 101 102 103 104 105 106 -o "$WORK/ttdy_muons_x6r.npz" --no-progress

jets() {
  flashsim train "$REV1" "$WORK/synth_jets.npz" -o "$WORK/pre_jets" --epochs 40 --epoch-size 150000 \
    --patience 8 --seed 1 --split row --stop-after 6 $T
  flashsim train "$REV1" "$WORK/tt_jets.npz" -o "$WORK/ft_jets" --init "$WORK/pre_jets" --epochs 24 \
    --epoch-size 150000 --patience 6 --lr 1.5e-3 --seed 2 --split row $T
  flashsim train "$REV1" "$WORK/tt_jets.npz" -o "$WORK/ft2_jets" --init "$WORK/ft_jets" --epochs 24 \
    --epoch-size 150000 --patience 6 --lr 6e-4 --seed 3 --split row --stop-after 9 $T
  flashsim train "$JU" "$WORK/tt_jets_v2.npz" -o "$WORK/ft3_jets" --init "$WORK/ft2_jets" --epochs 40 \
    --epoch-size 150000 --patience 8 --lr 1e-3 --seed 4 --split row $T
  # current spec (puId, jetId quantile-dequantized) from those weights, then tt + DY jets
  flashsim train "$JR2" "$WORK/tt_jets_v2.npz" -o "$WORK/ft5_jets" --init "$WORK/ft3_jets" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 3e-4 --seed 9 --split row $T
  flashsim train "$JR2" "$WORK/ttdy_jets.npz" -o "$WORK/ft6_jets" --init "$WORK/ft5_jets" --epochs 20 \
    --epoch-size 300000 --patience 8 --lr 2e-4 --seed 11 --split row --threads 2 --no-progress
  flashsim train "$JR2" "$WORK/ttdy_jets.npz" -o "$WORK/ft7_jets" --init "$WORK/ft6_jets" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 5e-5 --seed 11 --split row $T
  flashsim train "$JR2" "$WORK/ttdy_jets.npz" -o "$WORK/ft8_jets" --init "$WORK/ft7_jets" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 5e-5 --seed 11 --split row $T
  # current spec (taggers and qgl as logits; preprocessing of the other columns kept), 2 threads
  flashsim train "$JF" "$WORK/ttdy_jets_lg.npz" -o "$WORK/lg1_jets" --init "$WORK/ft8_jets" --epochs 60 \
    --epoch-size 300000 --patience 15 --lr 5e-4 --seed 21 --split row --split-seed 11 --threads 2 --no-progress
  flashsim train "$JF" "$WORK/ttdy_jets_lg.npz" -o "$WORK/lg2_jets" --init "$WORK/lg1_jets" --epochs 40 \
    --epoch-size 300000 --patience 40 --lr 1.5e-4 --seed 22 --split row --split-seed 11 --threads 2 --no-progress
  flashsim train "$JF" "$WORK/ttdy_jets_lg.npz" -o "$WORK/lg3_jets" --init "$WORK/lg2_jets" --epochs 30 \
    --epoch-size 300000 --patience 30 --lr 1e-4 --seed 23 --split row --split-seed 11 --threads 2 --no-progress
  # 1c. discrete head (puId, jetId) on top of that flow: 12 epochs of all 1.63M jets
  flashsim train jets "$WORK/ttdy_jets_lg.npz" -o "$WORK/head_jets" --init "$WORK/lg3_jets" --head-only \
    --head-epochs 12 --seed 1 --split row $T
}
muons() {
  flashsim train "$MV1" "$WORK/synth_muons.npz" -o "$WORK/pre_muons" --epochs 40 --epoch-size 150000 \
    --patience 8 --seed 1 --split row --stop-after 8 $T
  flashsim train "$MV1" "$WORK/ttdy_muons.npz" -o "$WORK/ft_muons" --init "$WORK/pre_muons" --epochs 28 \
    --epoch-size 150000 --patience 6 --lr 1.5e-3 --seed 2 --split row $T
  # current spec (ip3d, sip3d scaled; preprocessing of the unchanged columns kept), 6 draws
  flashsim train "$MR2" "$WORK/ttdy_muons_x6.npz" -o "$WORK/r2_muons" --init "$WORK/ft_muons" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 1e-3 --seed 31 $T
  flashsim train "$MR2" "$WORK/ttdy_muons_x6.npz" -o "$WORK/r3_muons" --init "$WORK/r2_muons" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 3e-4 --seed 32 $T
  # current spec (Δη, Δφ filling the 12-bit rounding cells of η, φ) from those weights
  flashsim train "$MF" "$WORK/ttdy_muons_x6r.npz" -o "$WORK/r4_muons" --init "$WORK/r3_muons" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 5e-4 --seed 41 --threads 2 --no-progress
  flashsim train "$MF" "$WORK/ttdy_muons_x6r.npz" -o "$WORK/r5_muons" --init "$WORK/r4_muons" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 2e-4 --seed 42 $T
  flashsim train "$MF" "$WORK/ttdy_muons_x6r.npz" -o "$WORK/r6_muons" --init "$WORK/r5_muons" --epochs 30 \
    --epoch-size 300000 --patience 8 --lr 1e-4 --seed 42 $T
  # 1c. discrete head (the six ID booleans) on top of that flow
  flashsim train "$WORK/muons30.json" "$WORK/ttdy_muons_x6r.npz" -o "$WORK/head_muons" --init "$WORK/r6_muons" --head-only \
    --head-epochs 12 --seed 1 $T
  # the current spec: + ClosestGenJet_activity (flow and head), new Gen files
  A="${ACT_DIR:-train-data/act}"
  [ -f "$A/dy.root" ] || flashsim generate dy -n 60000 --seed 1002 --workers 2 --no-reference -o "$A/dy.root" --no-progress
  [ -f "$A/ttbar.root" ] || flashsim generate ttbar -n 40000 --seed 1001 --workers 2 --no-reference -o "$A/ttbar.root" --no-progress
  MA="$WORK/muons_act.json"
  flashsim extract "$MA" "$A/dy.root" "$A/ttbar.root" --resimulate 101 102 103 104 105 106 -o "$WORK/act_muons.npz" --no-progress
  flashsim train "$MA" "$WORK/act_muons.npz" -o "$WORK/act1_muons" --init "$WORK/head_muons" --epochs 16 --epoch-size 300000 \
    --lr 1e-4 --patience 8 --seed 7 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
  flashsim train "$MA" "$WORK/act_muons.npz" -o "$WORK/act2_muons" --init "$WORK/act1_muons" --epochs 40 --epoch-size 300000 \
    --lr 2e-4 --patience 10 --seed 8 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
  flashsim train "$MA" "$WORK/act_muons.npz" -o "$WORK/act3_muons" --init "$WORK/act2_muons" --epochs 30 --epoch-size 300000 \
    --lr 1e-4 --patience 10 --seed 9 --split-seed 7 --threads 1 --head-epochs 8 --no-progress
  # the pT response as Asinh(100, 1) (a first try), then the current spec: Asinh(40, 1) and dphi as Asinh(1500)
  # (standardised tails inside the spline range ±5), each 40 epochs on the same muons
  flashsim extract "$WORK/muons_a100.json" "$A/dy.root" "$A/ttbar.root" --resimulate 101 102 103 104 105 106 -o "$WORK/a100_muons.npz" --no-progress
  flashsim train "$WORK/muons_a100.json" "$WORK/a100_muons.npz" -o "$WORK/a100_muons" --init "$WORK/act3_muons" --epochs 40 --epoch-size 300000 \
    --lr 2e-4 --patience 12 --seed 11 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
  flashsim extract "$WORK/muons31.json" "$A/dy.root" "$A/ttbar.root" --resimulate 101 102 103 104 105 106 -o "$WORK/asinh_muons.npz" --no-progress
  flashsim train "$WORK/muons31.json" "$WORK/asinh_muons.npz" -o "$WORK/asinh_muons" --init "$WORK/a100_muons" --epochs 40 --epoch-size 300000 \
    --lr 2e-4 --patience 12 --seed 12 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
  # the current spec: + ClosestGenJet_dr_rest (zero weights on the new context column), same muons re-extracted
  flashsim extract muons "$A/dy.root" "$A/ttbar.root" --resimulate 101 102 103 104 105 106 -o "$WORK/drrest_muons.npz" --no-progress
  flashsim train muons "$WORK/drrest_muons.npz" -o "$WORK/drrest1_muons" --init "$WORK/asinh_muons" --epochs 40 --epoch-size 300000 \
    --lr 2e-4 --patience 12 --seed 15 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
  flashsim train muons "$WORK/drrest_muons.npz" -o "$WORK/drrest_muons" --init "$WORK/drrest1_muons" --epochs 40 --epoch-size 300000 \
    --lr 1e-4 --patience 12 --seed 16 --split-seed 7 --threads 2 --head-epochs 8 --no-progress
}
jets > "$WORK/train_jets.log" 2>&1 &
muons > "$WORK/train_muons.log" 2>&1 &
wait
pileup_jets > "$WORK/train_pileup_jets.log" 2>&1  # ships and validates itself

# 2. ship the best epoch of the last stage (card.json + model.safetensors)
for s in jets:head_jets muons:drrest_muons; do
  mkdir -p "flashsim_coffea/models/${s%%:*}"
  cp "$WORK/${s##*:}/card.json" "$WORK/${s##*:}/model.safetensors" "flashsim_coffea/models/${s%%:*}/"
done

# 2b. reconstruction efficiency maps (efficiency.json beside each card), from the same files
# jets: the matched fraction with the 15 GeV threshold included, finely binned at low pT (objects/jets.py
# JET_RULES), measured on the first 6000 events of ttbar.root and dy.root (the same events as
# `flashsim generate ttbar -n 6000 --seed 1001` and `flashsim generate dy -n 6000 --seed 1002`: events
# come in seeded blocks of 500)
flashsim generate ttbar -n 6000 --seed 1001 --workers 2 -o "$WORK/eff_ttbar.root" --force --no-progress
flashsim generate dy    -n 6000 --seed 1002 --workers 2 -o "$WORK/eff_dy.root" --force --no-progress
flashsim efficiency jets "$WORK/eff_ttbar.root" "$WORK/eff_dy.root" -o flashsim_coffea/models/jets --force
flashsim efficiency muons "$TRAIN_DIR/ttbar.root" "$DY_DIR/dy.root" -o flashsim_coffea/models/muons --force

# 2c. the appended NanoAOD fields, from the models just shipped
appended

# 3. validation reports on the held-out files (HELDOUT_DIR, default train-data/heldout) (reference R and R' re-drawn with seeds 201, 202)
for spec in jets muons; do
  for p in tt:ttbar dy:dy vbf:vbf_hmm; do
    H="${HELDOUT_DIR:-train-data/heldout}/${p##*:}"
    flashsim validate $spec "$H.root" "${H}_b.root" --model $spec --resimulate 201 --ref-seed 202 \
      --max-events 30000 --title "${p%%:*} held-out" -o "flashsim_coffea/models/$spec/validation/${p%%:*}" --force
  done
done
