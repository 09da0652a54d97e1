"""Default ``jets`` spec: one reco Jet per GenJet, 14 conditioning features → 17 targets (the target set of
the reference FlashSim study, docs/analysis.md; the spec's description calls it the "seed set").

Conditioning: GenJet pt, eta, phi, mass, partonFlavour, hadronFlavour; closest and
second-closest status-1 Gen muon within ΔR < 0.4: dr, pt, deta, dphi (absent: dr = deta =
dphi = 0.5, pt = 0). Targets and transforms are chosen so that every one has an exact inverse:
taggers and qgl are modelled as logits (``Logit``: a score σ(latent) becomes its latent) with
the "undefined" sentinel moved to a band below logit(0) (the
project's reference writes −1 for all taggers; real Run-2 files −10 for CSVv2 and −2 for
DeepCSV B: extraction maps every negative value to −1, counted); btagCMVA ∈ [−1, 1] likewise
(−1 its sentinel); the 86 % zero spike of muEF in a band below [0, 1]; nConstituents is an
integer ≥ 1 and area a multiple of the ghost area 0.009973 (both dequantized, snapped); jetId ∈ {0, 2, 6}, puId ∈ {0, 4, 6, 7} are ordinals,
quantile-dequantized (jetId = 0 is a rare 1 % value: with uniform boxes the flow produced half
of it; see :mod:`flashsim_coffea.flows.preprocess`) and finally drawn jointly by the discrete
head from p(jetId, puId | conditioning, other targets) (jetId = 2 iff muEF > 0.8 is a sharp
cut; see :mod:`flashsim_coffea.flows.head`).
"""

from __future__ import annotations

import numpy as np

from flashsim_coffea.nanoaod.conventions import AREA_QUANTUM, JET_MAX_ABS_ETA, JET_MIN_PT

from .features import EventBranch, Field, Neighbour
from .gen import GenCollection
from .rules import RecoRules
from .spec import ObjectSpec
from .targets import Spike, Target, register_scale
from .transforms import Arctan, Asinh, Log, Logit, Transform

#: btagCMVA ∈ [−1, 1] (a tanh of its latent), in logit space like the [0, 1] taggers; −1 is its sentinel
CMVA_LOGIT = Logit(lo=-1.0, hi=1.0, eps=1e-3)


#: jet fields NanoAOD defines from the others (nanoaod/derived.py): the fifth energy fraction and the
#: DeepFlavour charm discriminants
JET_DERIVED = ("neEmEF", "btagDeepFlavCvL", "btagDeepFlavCvB")

#: NanoAOD around the jet flow: GenJets with |η| < 5 (the calorimeters; GenJets reach further),
#: reco pT > 15 GeV after sampling, flavours copied from the GenJet. The efficiency map is the
#: matched fraction N(GenJets with a stored reco jet) / N(GenJets) per Gen pT × |η| bin, the 15 GeV
#: threshold included, finely binned where it bites: the flow is trained on stored jets (reco
#: pT > 15), i.e. it samples the reco pT of a jet *given* that it is stored, so the map must carry
#: the threshold's effect (extrapolating the map from above 25 GeV made 2-6x too many jets from
#: 10-15 GeV GenJets)
JET_RULES = RecoRules(
    gen_max_abs_eta=JET_MAX_ABS_ETA,
    min_pt=JET_MIN_PT,
    gen_defaults=(("partonFlavour", "int32"), ("hadronFlavour", "int32")),
    derived=JET_DERIVED,
    efficiency_pt_edges=(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 25, 30, 40, 60, 100, 200, 1e9),
    efficiency_abseta_edges=(0, 1.3, 2.5, 3.0, 4.7, 1e9),
)

GENJET = GenCollection("GenJet", "GenJet", ("pt", "eta", "phi", "mass", "partonFlavour", "hadronFlavour"))
GENMUON = GenCollection(
    "GenMuon", "GenPart", ("pt", "eta", "phi", "mass", "statusFlags"), abs_pdg_id=13, status=1, with_charge=True
)


def sentinel_band(transform: Transform, lower: float, value: float, below: bool) -> Spike:
    """The sentinel ``value`` ↔ band [y₀ − 2.5, y₀ − 1.5) below y₀ = transform(lower), the
    image of the lowest real value; decoded below y₀ − 1 (2 decimals, so cards read well)."""
    y0 = float(transform.forward(lower))
    return Spike(value=value, lo=round(y0 - 2.5, 2), hi=round(y0 - 1.5, 2), cut=round(y0 - 1.0, 2), below=below)


def tagger(name: str, sentinel: float = -1.0, eps: float = 1e-3) -> Target:
    """A [0, 1] score modelled as its logit, ``Logit(eps)``: the score is σ(latent) and its
    peaks at 0 and 1 become the latent's smooth modes (as the identity, the flow drew 10–20 %
    wiggles between them). ``eps`` keeps 0 and 1 finite; charm scores, which reach 1e-5 and
    never 1, take eps = 1e-5. Any negative value ("undefined") is the sentinel, in a band below."""
    tr = Logit(eps=eps)
    return Target(name, name, bounds=(0.0, 1.0), transform=tr, spike=sentinel_band(tr, 0.0, sentinel, below=True))


def muon_neighbour_features(prefix: str = "GenMuon") -> tuple:
    out = []
    for rank in (0, 1):
        for q, default in (("dr", 0.5), ("pt", 0.0), ("deta", 0.5), ("dphi", 0.5)):
            tr = Log(eps=1.0) if q == "pt" else Arctan(scale=1.0)
            out.append(Neighbour(f"{prefix}{rank}_{q}", collection="GenMuon", rank=rank, quantity=q,
                                 max_dr=0.4, default=default, transform=tr))
    return tuple(out)


GENJET_FEATURES = (
    Field("GenJet_pt", field="pt", transform=Log(eps=1.0)),
    Field("GenJet_eta", field="eta"),
    Field("GenJet_phi", field="phi"),
    Field("GenJet_mass", field="mass", transform=Log(eps=1.0)),
    Field("GenJet_partonFlavour", field="partonFlavour"),
    Field("GenJet_hadronFlavour", field="hadronFlavour"),
)

JET_KINEMATIC_TARGETS = (
    Target("etaMinusGen", "eta", relation="diff", gen_field="eta", transform=Arctan(scale=20.0), bounds=(-0.5, 0.5)),
    Target("phiMinusGen", "phi", relation="dphi", gen_field="phi", transform=Arctan(scale=20.0), bounds=(-0.5, 0.5)),
    Target("ptRatio", "pt", relation="ratio", gen_field="pt", transform=Arctan(scale=5.0, shift=1.0), bounds=(0.0, 3.0)),
    Target("massRatio", "mass", relation="ratio", gen_field="mass", transform=Log(eps=0.05), bounds=(0.0, 7.0)),
)


#: the energy fractions drawn as shares of what the fractions before them leave (stick-breaking):
#: chHEF of 1 − muEF, neHEF of 1 − muEF − chHEF, chEmEF of 1 − muEF − chHEF − neHEF; neEmEF is the
#: remainder (derived, ``JET_RULES.derived``). The five fractions sum to 1 in NanoAOD (within their 6-bit
#: rounding): drawn as five free targets they would lie on that plane, which a flow collapses onto
ENERGY_SHARES = (("chHEF", ("muEF",)), ("neHEF", ("muEF", "chHEF")), ("chEmEF", ("muEF", "chHEF", "neHEF")))


def _left_by(fractions: tuple[str, ...]):
    def left(reco: dict, gen: dict) -> np.ndarray:
        """1 − Σ fractions: the energy share the fractions before this one leave (≥ 10⁻³)."""
        return np.maximum(1.0 - sum(np.asarray(reco[f], dtype=np.float64) for f in fractions), 1e-3)
    return left


for _name, _before in ENERGY_SHARES:
    register_scale(f"energy_left_by_{'_'.join(_before)}", reco=_before)(_left_by(_before))

#: the fraction shares: logit of the share (eps 10⁻³), its zero spike in a band below
SHARE_LOGIT = Logit(eps=1e-3)


def energy_share(name: str, before: tuple[str, ...]) -> Target:
    """``name`` = share·(1 − Σ ``before``), the share a [0, 1] logit with a zero spike; NanoAOD's
    6-bit rounding cells filled at extraction."""
    return Target(name, name, relation="scaled", scale=f"energy_left_by_{'_'.join(before)}", bounds=(0.0, 1.0),
                  transform=SHARE_LOGIT, spike=sentinel_band(SHARE_LOGIT, 0.0, 0.0, below=False), dequantize="rounding")


def detector_targets() -> dict[str, Target]:
    """The jet targets that are reco quantities in their own right (taggers, qgl, area, energy
    fractions, constituents, IDs), by name: shared by the GenJet-matched ``jets`` spec and the
    ``pileup_jets`` spec (:mod:`.pileup_jets`), which differ only in their kinematic targets."""
    targets = (
        Target("area", "area", kind="integer", step=AREA_QUANTUM, bounds=(0.0, 2.0)),
        Target("btagCMVA", "btagCMVA", bounds=(-1.0, 1.0), transform=CMVA_LOGIT,
               spike=sentinel_band(CMVA_LOGIT, -1.0, -1.0, below=False)),
        tagger("btagCSVV2"),
        tagger("btagDeepB"),
        tagger("btagDeepC", -1.0, eps=1e-5),
        tagger("btagDeepFlavB", -1.0),
        tagger("btagDeepFlavC", -1.0, eps=1e-5),
        Target("bRegCorr", "bRegCorr", bounds=(0.0, 3.0)),
        Target("nConstituents", "nConstituents", kind="integer", bounds=(1.0, 200.0), transform=Log(eps=0.0), dtype="int32"),
        tagger("qgl", -1.0),
        Target("muEF", "muEF", bounds=(0.0, 1.0), spike=Spike(0.0, lo=-0.6, hi=-0.1, cut=-0.05)),
        Target("puId", "puId", kind="ordinal", values=(0.0, 4.0, 6.0, 7.0), dtype="int32", dequantize="quantile",
               classify=True),
        Target("jetId", "jetId", kind="ordinal", values=(0.0, 2.0, 6.0), dtype="int32", dequantize="quantile",
               classify=True),
        *APPENDED_TARGETS,
    )
    return {t.name: t for t in targets}


#: targets appended to the trained model (learned by extension layers: flows/model.py): the
#: jet-energy-correction factor (raw pT = pT·(1 − rawFactor), coffea's jetmet_tools need it) and
#: the energy fractions of Run-3 jet ID
APPENDED_TARGETS = (
    # asinh(10·(x − 0.1)): the hard jets' narrow core near 0.1 resolved, the forward soft jets' tail
    # down to −1.5 (pile-up offset above the response deficit) inside the spline range
    Target("rawFactor", "rawFactor", transform=Asinh(scale=10.0, shift=0.1), bounds=(-1.5, 0.9), dequantize="rounding"),
    *(energy_share(n, before) for n, before in ENERGY_SHARES),
)


def make_jets_spec() -> ObjectSpec:
    d = detector_targets()
    eta, phi, pt, mass = JET_KINEMATIC_TARGETS
    # the order is part of the spec (and its hash): alphabetical, as the reference FlashSim study
    # (docs/analysis.md) lists them
    targets = (
        *(d[n] for n in ("area", "btagCMVA", "btagCSVV2", "btagDeepB", "btagDeepC", "btagDeepFlavB", "btagDeepFlavC")),
        eta, d["bRegCorr"], mass, d["nConstituents"], phi, pt,
        *(d[n] for n in ("qgl", "muEF", "puId", "jetId")),
        *APPENDED_TARGETS,
    )
    return ObjectSpec(
        name="jets",
        reco="Jet",
        simulated=GENJET,
        match="genJetIdx",
        collections=(GENMUON,),
        conditioning=GENJET_FEATURES + muon_neighbour_features() + (EventBranch("Pileup_nTrueInt", branch="Pileup_nTrueInt"),),
        targets=targets,
        description="Run-2 NanoAOD jets (seed set + JEC factor and energy fractions): 15 GenJet conditioning features "
                    "-> 21 Jet targets",
        rules=JET_RULES,
    )
