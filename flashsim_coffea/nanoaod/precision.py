"""NanoAOD's reduced float precision.

NanoAOD stores many float32 branches with fewer mantissa bits than the 23 of IEEE-754 single
precision (``precision=`` in the ``*_cff.py`` table producers). CMSSW does it with
``MiniFloatConverter::reduceMantissaToNbitsRounding<bits>``: round to nearest on the float32
bit pattern,

    i  = bits_of(x)                      (uint32 view of the float32)
    i' = (i + (1 << (22 - bits))) & ~((1 << (23 - bits)) - 1)

which keeps the sign and exponent and the top ``bits`` mantissa bits (a carry out of the
mantissa correctly increments the exponent). 0 stays 0; ±inf and NaN are left unchanged, and
a finite value that would round up to inf is truncated instead.

The table below was checked against the real CMS files in ``shared/data/real-nanoaod``
(the smallest number of mantissa bits that explains every stored value): Run-2 NanoAOD
(``nano_dy.root``) keeps 12 bits of ``Jet_bRegCorr`` (later versions 10). Branches without
an entry (``Muon_pt``, ``Muon_pfRelIso*``) are stored at full precision (23 bits).
The coarse 6-bit ``Muon_dxyErr``/``Muon_dzErr`` are what give FullSim their jagged shapes.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import awkward as ak
import numpy as np

__all__ = ["NANOAOD_MANTISSA_BITS", "round_mantissa", "fill_rounding_cell", "apply_nanoaod_precision"]

_BTAG = ("btagCMVA", "btagCSVV2", "btagDeepB", "btagDeepC", "btagDeepFlavB", "btagDeepFlavC")

#: mantissa bits kept per NanoAOD branch (23 = full float32 precision; absent = full)
NANOAOD_MANTISSA_BITS: dict[str, int] = {
    # jets
    "Jet_pt": 10,
    "Jet_eta": 12,
    "Jet_phi": 12,
    "Jet_mass": 10,
    "Jet_area": 10,
    "Jet_qgl": 10,
    "Jet_muEF": 6,
    "Jet_chEmEF": 6,
    "Jet_chHEF": 6,
    "Jet_neEmEF": 6,
    "Jet_neHEF": 6,
    "Jet_rawFactor": 6,
    "Jet_bRegCorr": 12,
    "Jet_bRegRes": 8,
    **{f"Jet_{b}": 10 for b in _BTAG},
    "Jet_btagDeepFlavCvL": 10,
    "Jet_btagDeepFlavCvB": 10,
    # muons (Muon_pt and the PF isolations are full precision)
    "Muon_eta": 12,
    "Muon_phi": 12,
    "Muon_mass": 10,
    "Muon_ptErr": 6,
    "Muon_dxy": 10,
    "Muon_dxyErr": 6,
    "Muon_dz": 10,
    "Muon_dzErr": 6,
    "Muon_ip3d": 10,
    "Muon_sip3d": 10,
    "Muon_jetPtRelv2": 8,
    "Muon_jetRelIso": 8,
    "Muon_softMva": 6,
    "Muon_tkRelIso": 6,
    "Muon_pfRelIso03_all": 23,
    "Muon_pfRelIso03_chg": 23,
    "Muon_pfRelIso04_all": 23,
    # generator level (checked on nano_dy.root: GenPart 8 bits; GenJet pt full precision)
    "GenPart_pt": 8,
    "GenPart_eta": 8,
    "GenPart_phi": 8,
    "GenPart_mass": 8,
    "GenJet_eta": 12,
    "GenJet_phi": 12,
    "GenJet_mass": 10,
}


def round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """Round float32 values to ``bits`` mantissa bits (CMSSW's rounding); returns float32.

    ``bits >= 23`` returns an unchanged float32 copy.
    """
    a = np.array(x, dtype=np.float32, copy=True)
    if bits >= 23:
        return a
    if bits < 0:
        raise ValueError(f"mantissa bits must be >= 0, got {bits}")
    shift = 23 - bits
    i = a.view(np.uint32)
    mask = np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)
    rounded = ((i + np.uint32(1 << (shift - 1))) & mask).view(np.float32)
    truncated = (i & mask).view(np.float32)
    finite = np.isfinite(a)
    out = np.where(finite, np.where(np.isfinite(rounded), rounded, truncated), a)
    return out.astype(np.float32, copy=False)


def fill_rounding_cell(r: np.ndarray, bits: int, u: np.ndarray) -> np.ndarray:
    """r' = lo + u·(hi − lo): for u uniform in [0, 1), uniform over the cell [lo, hi) of values
    that :func:`round_mantissa` (``bits``) maps onto the representable value r.

    For |r| = m·2^e (1 ≤ m < 2) the cell is |r| ± 2^(e − bits)/2, except at a power of two
    (m = 1), whose lower neighbours are twice as dense: |r| − 2^(e − bits)/4 … |r| + 2^(e − bits)/2.
    r = 0 and non-finite r are returned unchanged. float64 in and out.
    """
    r = np.asarray(r, dtype=np.float64)
    f, e = np.frexp(r)  # r = f·2^E, 0.5 ≤ |f| < 1: cell width 2^(E − 1 − bits)
    with np.errstate(invalid="ignore"):
        cell = np.where((r != 0) & np.isfinite(r), np.ldexp(1.0, e - 1 - min(int(bits), 23)), 0.0)
    below = np.where(np.abs(f) == 0.5, cell / 4, cell / 2)
    mag = np.abs(r) - below + np.asarray(u, dtype=np.float64) * (below + cell / 2)
    return np.where(cell > 0, np.copysign(mag, r), r)


def _round_any(arr, bits: int):
    """round_mantissa on a flat numpy array or (jagged) awkward array, keeping the layout."""
    if isinstance(arr, ak.Array):
        if arr.ndim == 1:
            return ak.Array(round_mantissa(ak.to_numpy(arr), bits))
        counts = ak.num(arr, axis=1)
        flat = ak.to_numpy(ak.flatten(arr, axis=1))
        return ak.unflatten(round_mantissa(flat, bits), counts)
    return round_mantissa(np.asarray(arr), bits)


def apply_nanoaod_precision(branches: MutableMapping) -> MutableMapping:
    """Apply :data:`NANOAOD_MANTISSA_BITS` in place to every listed float branch present.

    Values may be numpy arrays or (jagged) awkward arrays; the mapping is returned.
    """
    for name, bits in NANOAOD_MANTISSA_BITS.items():
        if name in branches and bits < 23:
            branches[name] = _round_any(branches[name], bits)
    return branches
