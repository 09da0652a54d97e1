"""Default ``muons`` spec: one reco Muon per status-1 Gen muon, 32 conditioning → 22 targets.

ip3d and sip3d are modelled as their ratios to √(dxy² + (dz/cosh η)²) and to
ip3d/√(dxyErr² + (dzErr/cosh η)²) (``relation="scaled"``, see :mod:`.targets`): as raw targets
they lie on a thin shell of the other targets, which the flow collapsed onto. Δη and Δφ fill
the 12-bit rounding cells of the reco η, φ at extraction (``dequantize="rounding"``): for
prompt muons the rounding step is close to the resolution and the raw differences are
lattice-valued.

Conditioning: Gen eta, phi, pt, charge; the 15 ``GenPart_statusFlags`` bits; closest GenJet
within ΔR < 0.4: dr, deta, dphi, pt, mass (absent: dr = deta = dphi = 0.5, pt = mass = 0);
Pileup gpudensity, nPU, nTrueInt, pudensity, sumEOOT, sumLOOT; and that GenJet's activity
around the muon, A/pT = max(pT_jet − pT_μ, 0)/pT_μ as log(A/pT + 0.01) (0 without a GenJet):
isolation sums the Gen activity around the muon, and a flow given only log pT_jet and
log pT_μ resolved their difference poorly — its isolation was too low where A/pT ≳ 0.1
(P(pfRelIso04 > 0.25) 0.35 vs the reference's 0.67 at 0.2 < A/pT < 0.5) and too high at
A/pT < 0.05, which made μ1's isolation tail and the two-muon efficiency miss in VBF H→μμ;
and the muon's distance to that GenJet's axis without it, dr_rest = ΔR·pT_jet/A (the
pT-weighted centroid in (η, φ); as log(dr_rest + 10⁻³), 0 without a GenJet):
Muon_jetPtRelv2 ≈ pT_μ·dr_rest is its reco analogue, capped near 0.6·pT_μ, and from the
GenJet's ΔR, pT and activity alone the flow smeared that cap upwards. Targets follow the
transforms of the reference FlashSim study (docs/analysis.md) (arctan scalings of Δη ×100, dxy ×150, dz ×50; logs of
the errors and impact parameters; isolations log(x + 1e-5); jetRelIso = pT_jet/pT_μ − 1 as
log1p, i.e. log(pT_jet/pT_μ)) with their zero spikes moved to
bands; the pT response r = pT/pT_gen as asinh(40·(r − 1)) and Δφ as asinh(1500·Δφ) (as
arctan(10·(r − 1)) and arctan(80·Δφ) their standardised tails reached ±8 and ±14, beyond the
flow's spline range ±5, and muons with |r − 1| > 0.12 were never drawn: docs/flows.md);
booleans as ordinals {0, 1}, drawn jointly by the discrete head from p(IDs | conditioning,
other targets) (:mod:`flashsim_coffea.flows.head`). Charge is copied from the Gen muon.
"""

from __future__ import annotations

from dataclasses import replace

from .features import Bit, EventBranch, Field, Neighbour
from flashsim_coffea.nanoaod.conventions import MUON_MASS, MUON_MAX_ABS_ETA, MUON_MIN_PT

from .gen import GenCollection
from .jets import GENMUON
from .rules import RecoRules
from .spec import ObjectSpec
from .targets import Spike, Target
from .transforms import Arctan, Asinh, Log, Log1p

#: NanoAOD around the muon flow: status-1 Gen muons in the muon system (|η| < 2.4, pT > 3 GeV),
#: the muon mass; genPartFlav from the Gen muon's status flags and mother chain (GENMUON_WITH_ORIGIN);
#: pdgId, looseId, pfIsoId and tightCharge derived as NanoAOD defines them (nanoaod/derived.py);
#: efficiency binned in Gen pT × |η| (muon-system regions)
MUON_RULES = RecoRules(
    gen_max_abs_eta=MUON_MAX_ABS_ETA,
    gen_min_pt=MUON_MIN_PT,
    mass=MUON_MASS,
    gen_defaults=(("genPartFlav", "uint8"),),
    derived=("pdgId", "looseId", "pfIsoId", "tightCharge"),
    efficiency_pt_edges=(0, 3, 5, 10, 20, 40, 100, 1e9),
    efficiency_abseta_edges=(0, 0.9, 1.2, 2.1, 2.4, 1e9),
)

#: the simulated Gen muons, with NanoAOD's origin code of their match (Muon_genPartFlav)
GENMUON_WITH_ORIGIN = replace(GENMUON, with_origin=True)
GENJET_FOR_MUONS = GenCollection("GenJet", "GenJet", ("pt", "eta", "phi", "mass"))

STATUS_FLAG_NAMES = (
    "isPrompt", "isDecayedLeptonHadron", "isTauDecayProduct", "isPromptTauDecayProduct",
    "isDirectTauDecayProduct", "isDirectPromptTauDecayProduct", "isDirectHadronDecayProduct",
    "isHardProcess", "fromHardProcess", "isHardProcessTauDecayProduct",
    "isDirectHardProcessTauDecayProduct", "fromHardProcessBeforeFSR", "isFirstCopy",
    "isLastCopy", "isLastCopyBeforeFSR",
)
PILEUP = ("gpudensity", "nPU", "nTrueInt", "pudensity", "sumEOOT", "sumLOOT")

_ISO_SPIKE = Spike(0.0, lo=-14.0, hi=-13.0, cut=-12.5)  # log(0 + 1e-5) = -11.5 -> below


def _boolean(name: str) -> Target:
    return Target(name, name, kind="ordinal", values=(0.0, 1.0), dtype="bool", classify=True)


#: targets appended to the trained model (learned by extension layers: flows/model.py): the tight ID
#: and the high-pT ID (1 tracker, 2 global) in the discrete head with the other IDs, the
#: mini-isolation and the tracker isolation (6-bit in NanoAOD: its rounding cells filled)
APPENDED_TARGETS = (
    _boolean("tightId"),
    Target("highPtId", "highPtId", kind="ordinal", values=(0.0, 1.0, 2.0), dtype="uint8", classify=True),
    Target("miniPFRelIso_all", "miniPFRelIso_all", transform=Log(eps=1e-5), bounds=(0.0, 1e3), spike=_ISO_SPIKE),
    Target("tkRelIso", "tkRelIso", transform=Log(eps=1e-5), bounds=(0.0, 1e3), spike=_ISO_SPIKE, dequantize="rounding"),
)


def make_muons_spec() -> ObjectSpec:
    conditioning = (
        Field("GenMuon_eta", field="eta"),
        Field("GenMuon_phi", field="phi"),
        Field("GenMuon_pt", field="pt", transform=Log(eps=0.0)),
        Field("GenMuon_charge", field="charge"),
        *(Bit(f"GenMuon_{n}", field="statusFlags", bit=i) for i, n in enumerate(STATUS_FLAG_NAMES)),
        *(
            Neighbour(f"ClosestGenJet_{q}", collection="GenJet", rank=0, quantity=q, max_dr=0.4,
                      default=d, transform=Log(eps=1.0) if q in ("pt", "mass") else Arctan(scale=1.0))
            for q, d in (("dr", 0.5), ("deta", 0.5), ("dphi", 0.5), ("pt", 0.0), ("mass", 0.0))
        ),
        *(EventBranch(f"Pileup_{p}", branch=f"Pileup_{p}") for p in PILEUP),
        Neighbour("ClosestGenJet_activity", collection="GenJet", rank=0, quantity="activity", max_dr=0.4,
                  default=0.0, transform=Log(eps=0.01)),
        Neighbour("ClosestGenJet_dr_rest", collection="GenJet", rank=0, quantity="dr_rest", max_dr=0.4,
                  default=0.0, transform=Log(eps=1e-3)),
    )
    targets = (
        Target("etaMinusGen", "eta", relation="diff", gen_field="eta", transform=Arctan(scale=100.0), bounds=(-0.3, 0.3),
               dequantize="rounding"),
        Target("phiMinusGen", "phi", relation="dphi", gen_field="phi", transform=Asinh(scale=1500.0), bounds=(-0.3, 0.3),
               dequantize="rounding"),
        Target("ptRatio", "pt", relation="ratio", gen_field="pt", transform=Asinh(scale=40.0, shift=1.0), bounds=(0.0, 10.0)),
        Target("dxy", "dxy", transform=Arctan(scale=150.0), bounds=(-20.0, 20.0)),
        Target("dxyErr", "dxyErr", transform=Log(eps=1e-4), bounds=(0.0, 10.0)),
        Target("dz", "dz", transform=Arctan(scale=50.0), bounds=(-50.0, 50.0)),
        Target("dzErr", "dzErr", transform=Log(eps=1e-3), bounds=(0.0, 10.0)),
        Target("ip3d", "ip3d", relation="scaled", scale="ip3d_from_dxy_dz", transform=Log(eps=0.0), bounds=(0.1, 10.0)),
        _boolean("isGlobal"),
        _boolean("isPFcand"),
        _boolean("isTracker"),
        Target("jetPtRelv2", "jetPtRelv2", transform=Log(eps=1e-3), bounds=(0.0, 1e3),
               spike=Spike(0.0, lo=-9.0, hi=-8.0, cut=-7.5)),
        Target("jetRelIso", "jetRelIso", transform=Log1p(), bounds=(-0.99, 1e3),
               spike=Spike(0.0, lo=-7.0, hi=-6.5, cut=-6.0)),
        _boolean("mediumId"),
        Target("pfRelIso03_all", "pfRelIso03_all", transform=Log(eps=1e-5), bounds=(0.0, 1e3), spike=_ISO_SPIKE),
        Target("pfRelIso03_chg", "pfRelIso03_chg", transform=Log(eps=1e-5), bounds=(0.0, 1e3), spike=_ISO_SPIKE),
        Target("pfRelIso04_all", "pfRelIso04_all", transform=Log(eps=1e-5), bounds=(0.0, 1e3), spike=_ISO_SPIKE),
        Target("ptErr", "ptErr", transform=Log(eps=1e-3), bounds=(0.0, 1e4)),
        Target("sip3d", "sip3d", relation="scaled", scale="sip3d_from_errors", transform=Log(eps=0.0), bounds=(0.1, 10.0)),
        _boolean("softId"),
        Target("softMva", "softMva", bounds=(-1.0, 1.0)),
        _boolean("softMvaId"),
        *APPENDED_TARGETS,
    )
    return ObjectSpec(
        name="muons",
        reco="Muon",
        simulated=GENMUON_WITH_ORIGIN,
        match="genPartIdx",
        collections=(GENJET_FOR_MUONS,),
        conditioning=conditioning,
        targets=targets,
        copy_from_gen=(("charge", "charge"),),
        description="Run-2 NanoAOD muons: 32 Gen-muon conditioning features -> 26 Muon targets",
        rules=MUON_RULES,
    )
