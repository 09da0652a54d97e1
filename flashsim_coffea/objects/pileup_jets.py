"""``pileup_jets`` spec: reco jets with no GenJet (``Jet_genJetIdx = −1``), from the event's pile-up.

There is no Gen object to simulate from: per (event, fold) a **count model**
(:mod:`flashsim_coffea.flows.count`, ``count.json`` beside the card: a binned P(n | nTrueInt))
draws how many pile-up jets the event has, then the flow draws each jet ("slot" i = 0 … n−1)
conditioned on the event's six ``Pileup_*`` branches. The slots' noise keys are (run,
luminosityBlock, event, −1 − i, fold) — the reference's own convention for its fakes — in the
spec's own noise streams (``flashsim/pileup_jets``, ``count/pileup_jets``), so they never
collide with a GenJet-matched jet's (object ≥ 0, stream ``flashsim/jets``).

Targets are the reco values themselves (relation ``direct``), with exact-inverse transforms:
pT as log(pT − 15 GeV) (NanoAOD stores jets above 15 GeV: the steeply falling spectrum becomes a
smooth bump), η, φ as they are, the mass as its ratio to pT (``scaled`` by ``pt``), and every
other jet target as in :mod:`.jets` (area on the ghost-area lattice, taggers and qgl as
logits with their sentinel band, bRegCorr, nConstituents, muEF with its zero spike; puId and
jetId drawn by the discrete head). Injected into ``Jet`` with ``genJetIdx = −1`` (and
``genJetIdxG = −1``, so ``matched_gen`` is None), flavours 0, pT-sorted with the matched jets.

In the project's reference response (:mod:`flashsim_coffea.reference.fakes`) the fakes
depend only on ``Pileup_nTrueInt`` (and the event's identity); the flow still sees all six
pile-up branches, as it would in real CMS files. Training data: :func:`.extract.extract_unmatched_events`
(any NanoAOD with ``Jet_genJetIdx``) or :func:`.extract.extract_pileup_synthetic` (pile-up
profile of :mod:`flashsim_coffea.generate.pileup`, reference response).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from flashsim_coffea.nanoaod.conventions import JET_MIN_PT

from .features import EventBranch
from .gen import GenCollection
from .jets import JET_DERIVED, detector_targets
from .rules import RecoRules
from .spec import ObjectSpec
from .targets import SCALES, Target, register_scale
from .transforms import Log

__all__ = ["make_pileup_jets_spec", "event_conditioning", "PILEUP_BRANCHES", "PILEUP_JET_RULES", "COUNT_FEATURE", "COUNT_EDGES"]

#: the event-level pile-up branches the flow conditions on
PILEUP_BRANCHES = ("Pileup_nTrueInt", "Pileup_nPU", "Pileup_pudensity", "Pileup_gpudensity", "Pileup_sumEOOT",
                   "Pileup_sumLOOT")
#: the count model's binning: P(n | nTrueInt bin), 2 wide up to 70 (beyond: few events)
COUNT_FEATURE = "Pileup_nTrueInt"
COUNT_EDGES = tuple(float(x) for x in (*range(0, 70, 2), 70, 75, 80, 90, 100))

#: NanoAOD around the pile-up jet flow: stored above 15 GeV; no Gen object, so flavours are 0
PILEUP_JET_RULES = RecoRules(
    origin="event",
    min_pt=JET_MIN_PT,
    gen_defaults=(("partonFlavour", "int32"), ("hadronFlavour", "int32")),
    derived=JET_DERIVED,
)

#: the event record an event-level spec reads (``origin="event"``: its objects have no Gen
#: counterpart; the record names the ``Pileup_*`` branches its noise keys and count model read)
PILEUP_EVENT = GenCollection("PileupEvent", "Pileup", ("nTrueInt",))

if "jet_pt" not in SCALES:
    @register_scale("jet_pt", reco=("pt",))
    def _jet_pt(reco: dict, gen: dict) -> np.ndarray:
        """The jet's own reco pT (mass modelled as m/pT)."""
        return np.asarray(reco["pt"], dtype=np.float64)


def make_pileup_jets_spec() -> ObjectSpec:
    targets = (
        Target("pt", "pt", transform=Log(eps=-JET_MIN_PT), bounds=(JET_MIN_PT, 1000.0)),
        Target("eta", "eta", bounds=(-5.0, 5.0)),
        Target("phi", "phi", bounds=(-np.pi, np.pi)),
        Target("massOverPt", "mass", relation="scaled", scale="jet_pt", transform=Log(eps=1e-3), bounds=(0.0, 2.0)),
        *detector_targets().values(),
    )
    conditioning = tuple(EventBranch(b, branch=b) for b in PILEUP_BRANCHES)  # standardised as they are
    return ObjectSpec(
        name="pileup_jets",
        reco="Jet",
        simulated=PILEUP_EVENT,
        match="genJetIdx",
        conditioning=conditioning,
        targets=targets,
        description="Run-2 NanoAOD pile-up jets (Jet_genJetIdx = -1): 6 Pileup_* conditioning features -> 21 Jet "
                    "targets; the number per event from count.json (P(n | nTrueInt))",
        rules=PILEUP_JET_RULES,
    )


def event_conditioning(spec: ObjectSpec, events) -> np.ndarray:
    """(n_events, C) float64 conditioning of an event-level spec (features that read event
    branches, e.g. :class:`~.features.EventBranch`), one row per event: each feature computed
    on one placeholder object per event."""
    n = len(events)
    slots = ak.unflatten(ak.zip({"slot": np.zeros(n, dtype=np.int64)}), np.ones(n, dtype=np.int64))
    ctx = spec.context(events)
    cols = [np.asarray(ak.to_numpy(ak.flatten(f.compute(slots, ctx), axis=1)), dtype=np.float64) for f in spec.conditioning]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))
