"""Energy composition and jet-energy-correction factor of reference jets (GenJet-matched and fakes).

Formulas (pT, pT_raw in GeV; z, z_k ~ N(0, 1), u ~ U(0, 1), E ~ Exp(1) keyed on the jet; the
numbers follow the dependences of the real Run-2 and Run-3 NanoAOD files, docs/reference.md):

* **Energy fractions** ``chHEF, neHEF, chEmEF, neEmEF`` share the non-muon energy 1 − muEF
  (real NanoAOD: the five fractions sum to 1 within their 6-bit rounding):

      chEmEF = (1 − muEF)·min(0.08 E, 0.5)  for 12 % of the jets inside the tracker (|η| < 2.5:
               electrons), else 0;
      (chHEF, neHEF, neEmEF) = (1 − muEF − chEmEF)·softmax(l_ch, l_nh, l_ne),
      l_k = ln m_k(region, class) + s_k z_k,  s = (0.45, 1.0, 0.5),

  with the mean shares m = (chH, neH, neEm) of the region and class: |η| < 2.5 quarks (0.62,
  0.07, 0.22), gluons (0.55, 0.07, 0.30), undefined partons (0.55, 0.08, 0.28), pile-up fakes
  (0.45, 0.15, 0.35); 2.5 ≤ |η| < 3 (0.30, 0.45, 0.20) for all; |η| ≥ 3 (HF: no tracker, no
  charged hadrons) (0, 0.93, 0.07). neHEF is exactly 0 for 20 % of the jets at |η| < 3
  (real: 19–23 %), its share going to the others. A jet in HF (|η| ≥ 3) has chHEF = chEmEF = 0.
  The stored neEmEF is NanoAOD's remainder of the stored (6-bit) others,
  :func:`flashsim_coffea.nanoaod.derived.remaining_energy_fraction` (as FlashSim's).
* **rawFactor** = 1 − pT_raw/pT (NanoAOD: raw pT = pT·(1 − rawFactor)), a Run-2 CHS-like
  correction: the raw jet responds with r_raw = 1 − (1 + 0.25 min(|η|, 3))/√pT and carries
  a pile-up offset O = c(η)·nTrueInt·area·e^{0.6 z − 0.18} (≈ ρ·A: c = 0.28 GeV inside the
  tracker, where charged pile-up is subtracted, 0.6 at 2.5 ≤ |η| < 3 and 0.9 in HF; the real
  Run-2 file has rawFactor ≈ −0.7 for 15 GeV jets at |η| > 3):

      rawFactor = 1 − r_raw − O/pT + 0.02 z',  clipped to [−1.5, 0.9]

  so soft jets in busy events have rawFactor < 0 (the offset exceeds the response deficit:
  the real Run-2 file's q10 at 15–20 GeV is −0.52) and hard central jets ≈ 0.05–0.1.
"""

from __future__ import annotations

import numpy as np

from ._inputs import ObjectNoise

__all__ = ["energy_fractions", "raw_factor", "ELECTRON_FRACTION_RATE", "NEHEF_ZERO_RATE"]

ELECTRON_FRACTION_RATE = 0.12
NEHEF_ZERO_RATE = 0.20
_SPREAD = np.array([0.45, 1.0, 0.5])


def _mean_shares(abseta: np.ndarray, parton: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """(N, 3) mean shares (chH, neH, neEm) by |η| region and jet class (module docstring)."""
    ap = np.abs(parton)
    inner = np.select(
        [fake, ap == 21, ap == 0],
        [0, 1, 2],
        3,
    )
    table_inner = np.array([[0.45, 0.15, 0.35], [0.55, 0.07, 0.30], [0.55, 0.08, 0.28], [0.62, 0.07, 0.22]])
    m = table_inner[inner]
    m = np.where((abseta >= 2.5)[:, None], np.array([0.30, 0.45, 0.20]), m)
    return np.where((abseta >= 3.0)[:, None], np.array([0.0, 0.93, 0.07]), m)


def energy_fractions(muef: np.ndarray, eta: np.ndarray, parton: np.ndarray, fake: np.ndarray,
                     nz: ObjectNoise) -> dict[str, np.ndarray]:
    """chHEF, neHEF, chEmEF of each jet (float64; module docstring); neEmEF is the rest."""
    abseta = np.abs(eta)
    rest = 1.0 - np.asarray(muef, dtype=np.float64)
    electrons = (abseta < 2.5) & (nz.uniform("jet_chem") < ELECTRON_FRACTION_RATE)
    ch_em = np.where(electrons, rest * np.minimum(0.08 * nz.exponential("jet_chem_e"), 0.5), 0.0)
    m = _mean_shares(abseta, parton, fake)
    z = np.stack([nz.normal("jet_ef_ch"), nz.normal("jet_ef_nh"), nz.normal("jet_ef_ne")], axis=1)
    with np.errstate(divide="ignore"):
        logit = np.log(m) + _SPREAD * z
    no_neh = (abseta < 3.0) & (nz.uniform("jet_nh_zero") < NEHEF_ZERO_RATE)
    logit[:, 1] = np.where(no_neh, -np.inf, logit[:, 1])
    w = np.exp(logit - logit.max(axis=1, keepdims=True))
    share = w / w.sum(axis=1, keepdims=True)
    had = rest - ch_em
    # neEmEF (had·share[:, 2]) is what the others leave: written by the reference's packing as NanoAOD's
    # derivation from the stored fractions (nanoaod.derived), exactly as FlashSim writes it
    return {"chHEF": had * share[:, 0], "neHEF": had * share[:, 1], "chEmEF": ch_em}


def raw_factor(pt: np.ndarray, eta: np.ndarray, area: np.ndarray, ntrue: np.ndarray, nz: ObjectNoise) -> np.ndarray:
    """rawFactor = 1 − pT_raw/pT of each jet (float64; module docstring)."""
    pt = np.maximum(np.asarray(pt, dtype=np.float64), 1.0)
    r_raw = 1.0 - (1.0 + 0.25 * np.minimum(np.abs(eta), 3.0)) / np.sqrt(pt)
    per_interaction = np.select([np.abs(eta) < 2.5, np.abs(eta) < 3.0], [0.28, 0.6], 0.9)
    offset = per_interaction * np.maximum(ntrue, 0.0) * area * np.exp(0.6 * nz.normal("jet_offset") - 0.18)
    return np.clip(1.0 - r_raw - offset / pt + 0.02 * nz.normal("jet_rawfactor"), -1.5, 0.9)
