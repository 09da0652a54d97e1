"""The reference detector response: FullSim's stand-in for development, tests and the demo.

``respond(gen, seed)`` takes Gen-level NanoAOD branches (GenJet_*, GenPart_*, run,
luminosityBlock, event, Pileup_*) and returns reconstructed ``Jet_*`` and ``Muon_*`` branches
(jagged awkward arrays, Run-2 NanoAOD names, dtypes and float precision) from a vectorized,
seeded, parametric model: see :mod:`.jets`, :mod:`.fakes`, :mod:`.taggers`, :mod:`.muons`
for the formulas. This is **not** CMS FullSim: it is a plausible, documented model that the
flows learn and the validation compares against.

Every random number is a pure function of ``(seed, stream, run, luminosityBlock, event,
object index)`` (GenJet index for jets, −1 − i for the i-th pile-up fake of an event, GenPart
index for muons), so ``respond`` of a chunk equals the same events of ``respond`` of the
whole file, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS, round_mantissa

from ..nanoaod.conventions import JET_MIN_PT, MUON_MIN_PT
from ..nanoaod.derived import derive
from ..nanoaod.links import AK4_CONE, flat_links
from ._inputs import GenInput, read_gen
from .fakes import simulate_fakes
from .jets import simulate_genjets
from .muons import simulate_muons

__all__ = ["respond", "JET_BRANCHES", "MUON_BRANCHES"]

_F, _I, _B, _U8 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.bool_), np.dtype(np.uint8)

#: output jet branches and their Run-2 NanoAOD dtypes
JET_BRANCHES: dict[str, np.dtype] = {
    **{f"Jet_{v}": _F for v in (
        "pt", "eta", "phi", "mass", "area", "btagCMVA", "btagCSVV2", "btagDeepB", "btagDeepC",
        "btagDeepFlavB", "btagDeepFlavC", "bRegCorr", "qgl", "muEF", "chHEF", "neHEF", "chEmEF", "neEmEF",
        "rawFactor", "btagDeepFlavCvL", "btagDeepFlavCvB")},
    **{f"Jet_{v}": _I for v in (
        "nConstituents", "puId", "jetId", "genJetIdx", "hadronFlavour", "partonFlavour",
        "muonIdx1", "muonIdx2", "nMuons")},
}

#: output muon branches and their Run-2 NanoAOD dtypes
MUON_BRANCHES: dict[str, np.dtype] = {
    **{f"Muon_{v}": _F for v in (
        "pt", "eta", "phi", "mass", "ptErr", "dxy", "dxyErr", "dz", "dzErr", "ip3d", "sip3d",
        "jetPtRelv2", "jetRelIso", "pfRelIso03_all", "pfRelIso03_chg", "pfRelIso04_all", "softMva",
        "miniPFRelIso_all", "tkRelIso")},
    **{f"Muon_{v}": _I for v in ("charge", "pdgId", "genPartIdx", "jetIdx", "tightCharge")},
    **{f"Muon_{v}": _U8 for v in ("genPartFlav", "highPtId", "pfIsoId")},
    **{f"Muon_{v}": _B for v in (
        "isGlobal", "isTracker", "isPFcand", "looseId", "mediumId", "tightId", "softId", "softMvaId")},
}


def _merge_sorted(parts: list[dict[str, np.ndarray]], pt_bits: int, pt_min: float) -> dict[str, np.ndarray]:
    """Concatenate object tables, keep stored pT > ``pt_min`` and order by (event, −stored pT).

    The stored pT is float32 rounded to ``pt_bits`` mantissa bits (NanoAOD precision), so the
    threshold and the order hold for the values as written. One stable argsort of the 64-bit
    key ``event << 32 | ~bits(pT)`` (the bit pattern of a positive float32 is monotonic in its
    value); ties keep the input order, which does not depend on the chunking. Each column is
    gathered once.
    """
    stored = np.concatenate([round_mantissa(p["pt"], pt_bits) for p in parts])
    evt = np.concatenate([p["evt"] for p in parts])
    keep = np.flatnonzero(stored > pt_min)
    bits = np.uint32(0xFFFFFFFF) - stored[keep].view(np.uint32)
    key = (evt[keep].astype(np.uint64) << np.uint64(32)) | bits.astype(np.uint64)
    take = keep[np.argsort(key, kind="stable")]
    if len(parts) == 1:
        return {k: v[take] for k, v in parts[0].items()}
    return {k: np.concatenate([p[k] for p in parts])[take] for k in parts[0]}


def _cross_reference(jets: dict, muons: dict, n_events: int) -> None:
    """Jet_muonIdx1/2, Jet_nMuons, Muon_jetIdx, Muon_jetRelIso, Muon_jetPtRelv2 (in place).

    Both collections are already sorted by (event, −pT), so local indices are final.
    * Jet_muonIdx1/2: the first two (highest-pT) muons within ΔR < 0.4 of the jet, −1 if none;
      Jet_nMuons their count.
    * Muon_jetIdx: the closest jet within ΔR < 0.4, −1 if none.
    * Muon_jetRelIso = pT_jet/pT_μ − 1 (NanoAOD's 1/ptRatio − 1), pfRelIso04_all without jet.
    * Muon_jetPtRelv2 = the muon's momentum transverse to the jet-minus-muon axis (model in
      :mod:`.muons`), 0 without jet.
    """
    nj, nm = len(jets["pt"]), len(muons["pt"])
    jc = np.bincount(jets["evt"], minlength=n_events)
    mc = np.bincount(muons["evt"], minlength=n_events)
    joff = np.concatenate([[0], np.cumsum(jc)])
    # NanoAOD's links by the rule FlashSim uses too (nanoaod.links; muons are pT-ordered, so the
    # numbered links are the highest-pT muons in the cone)
    jets["muonIdx1"], jets["muonIdx2"], jets["nMuons"] = flat_links(
        jets["eta"], jets["phi"], jc, muons["eta"], muons["phi"], mc, [("nth", 0), ("nth", 1), ("count", 0)], AK4_CONE)
    (muons["jetIdx"],) = flat_links(muons["eta"], muons["phi"], mc, jets["eta"], jets["phi"], jc, [("closest", 0)], AK4_CONE)
    has = muons["jetIdx"] >= 0
    j = np.where(has, muons["jetIdx"] + joff[:-1][muons["evt"]], 0)

    jpt = jets["pt"][j] if nj else np.zeros(nm)
    muons["jetPtRelv2"] = np.where(has, muons.pop("ptRelIfJet"), 0.0)
    muons["jetRelIso"] = np.where(has, jpt / muons["pt"] - 1.0, muons["pfRelIso04_all"])


def _pack(d: dict[str, np.ndarray], prefix: str, branches: dict[str, np.dtype], n_events: int) -> dict[str, ak.Array]:
    """Jagged branches with NanoAOD dtypes and precision; the branches ``d`` lacks are NanoAOD's
    derived fields (:data:`~flashsim_coffea.nanoaod.derived.DERIVED`), computed from the stored values."""
    counts = np.bincount(d["evt"], minlength=n_events)
    stored: dict[str, np.ndarray] = {}
    for name, dtype in branches.items():
        field = name[len(prefix):]
        if field not in d:
            continue
        x = np.asarray(d[field]).astype(dtype)
        bits = NANOAOD_MANTISSA_BITS.get(name, 23)
        if dtype == _F and bits < 23:
            x = round_mantissa(x, bits)
        stored[field] = x
    for name, dtype in branches.items():
        field = name[len(prefix):]
        if field not in stored:
            stored[field] = derive(prefix[:-1], field, stored).astype(dtype)
    return {name: ak.unflatten(stored[name[len(prefix):]], counts) for name in branches}


def simulate_flat(g: GenInput, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Flat (jets, muons) dicts, sorted, cross-referenced, before dtype conversion/rounding."""
    jets = _merge_sorted([simulate_genjets(g, seed), simulate_fakes(g, seed)], NANOAOD_MANTISSA_BITS["Jet_pt"], JET_MIN_PT)
    muons = _merge_sorted([simulate_muons(g, seed)], 23, MUON_MIN_PT)
    _cross_reference(jets, muons, g.n_events)
    return jets, muons


def respond(gen: Mapping, seed: int, source: str = "<input>") -> dict[str, ak.Array]:
    """Reference detector response of one chunk of Gen events.

    ``gen``: NanoAOD Gen branches (see :func:`._inputs.read_gen`; missing required branches
    raise :class:`flashsim_coffea.errors.MissingBranchesError` naming ``source``).
    Returns ``Jet_*`` and ``Muon_*`` branches (:data:`JET_BRANCHES`, :data:`MUON_BRANCHES`)
    as jagged awkward arrays, one list per event, pT-ordered, with NanoAOD float precision.
    """
    g = read_gen(gen, source)
    jets, muons = simulate_flat(g, seed)
    out = _pack(jets, "Jet_", JET_BRANCHES, g.n_events)
    out.update(_pack(muons, "Muon_", MUON_BRANCHES, g.n_events))
    return out
