"""Reference response of GenJets: one reco candidate per GenJet.

Formulas (pT in GeV; f = flavour class; all noise keyed on the GenJet identity):

* **Efficiency** ε(pT, η) = [1 − 0.5 exp(−(pT − 10)/8)]·(0.97 if |η|>2.5)·(0.95 if |η|>3),
  then the NanoAOD threshold pT_reco > 15.
* **Response** R = pT_reco/pT_gen. Mean μ = 1.02 + Δ_f·(1 + 0.5 e^{−pT/50}) with Δ = +0.005
  (light quarks, c: −0.01), −0.02 (gluons), −0.01 (undefined parton), −0.02 (b),
  −0.05 − 0.06·min(3 s_μ, 1) (b with a Gen muon of pT share s_μ in ΔR < 0.4: semileptonic).
  Resolution σ/pT = √((N/pT)² + S²/pT + C²) with N = k_N(η)·(1.5 + 0.07 nTrueInt),
  k_N = 1, 1.1, 1.4, 1.6 and S = 0.95, 1.05, 1.2, 1.35, C = 0.035, 0.045, 0.06, 0.09 in
  |η| < 1.3, < 2.5, < 3, ≥ 3. Shape: a Gaussian core (R = μ(1 + σz)) with a one-sided
  low tail (4 %, 10 % for b with muon: R = μ(1 − σ(1 + 1.5 E)), E ~ Exp(1)) and a wide
  symmetric component (2 %, R = μ(1 + 3σz)) — a double-sided Crystal-Ball-like shape.
* **Direction**: Δη, Δφ ~ N(0, σ_a), σ_a = (0.006 + 0.4/pT)·(1.6 if |η| > 2.5), ×3 in the
  tails; φ wrapped to [−π, π].
* **Mass**: m = √((m_gen R e^{σ_m z_m})² + m_PU²), σ_m = 0.25 + 2/pT,
  m_PU = 0.025·nTrueInt·E_m (E_m ~ Exp(1)): broad, positive mass ratio.
* **muEF** = min(s_μ/R·(1 + 0.03 z), 0.99) for jets with a Gen muon (pT > 3) inside
  (s_μ = Σ pT^μ / pT_gen), else 0 (97 %) or 0.01·E.
* **bRegCorr**: b jets 1.04 + L + 0.5(μ − R) + 0.08 [Gen muon inside] + 0.05 E + 0.04 z,
  others 1.05 + L + 0.3(μ − R) + 0.07 z, with L = 0.15 e^{−(pT−15)/50} (real Run-2 light jets
  at 20–50 GeV have a median ≈ 1.15), clipped to [0.5, 2].

Area, jetId, puId, taggers, qgl, nConstituents, the energy fractions and rawFactor are in
:func:`finish_jets`, shared with the pile-up fakes.
"""

from __future__ import annotations

import numpy as np

from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS, round_mantissa

from flashsim_coffea.nanoaod.conventions import AREA_QUANTUM, JET_MAX_ABS_ETA, JET_MIN_PT, delta_phi

from ._inputs import GenInput, ObjectNoise, closest_in_cone, is_gen_muon, pairs_within
from .energy import energy_fractions, raw_factor
from .taggers import btag_scores, qgl_and_constituents

__all__ = ["genjet_muon_context", "resolution", "simulate_genjets", "finish_jets"]

PT_MIN = JET_MIN_PT
#: overall jet response (the real Run-2 and Run-3 files both show matched jets above 1)
RESPONSE_SCALE = 1.02


def genjet_muon_context(g: GenInput, ranked: bool = True) -> dict[str, np.ndarray]:
    """Per GenJet: ``share`` = Σ pT(μ, pT > 3)/pT(GenJet) of status-1 Gen muons in ΔR < 0.4 and,
    if ``ranked``, the closest and second-closest of them (``mu1_*``, ``mu2_*``: dr, pt, deta,
    dphi; defaults dr=deta=dphi=0.5, pt=0 — the flows' conditioning convention)."""
    gj, gp = g.genjet, g.genpart
    mu = np.flatnonzero(is_gen_muon(gp))
    mu_counts = np.bincount(gp.evt[mu], minlength=g.n_events)
    mu_off = np.concatenate([[0], np.cumsum(mu_counts)])
    ia, ib = pairs_within(gj.counts, mu_counts, gj.offsets, mu_off)
    gpi = mu[ib]  # GenPart global index of the muon
    deta = gp["eta"][gpi] - gj["eta"][ia]
    dphi = delta_phi(gp["phi"][gpi], gj["phi"][ia])
    dr = np.hypot(deta, dphi)
    out: dict[str, np.ndarray] = {}
    n = len(gj)
    closest = closest_in_cone(ia, np.arange(ia.size), dr, n, rank=(0, 1)) if ranked else []
    for pair, tag in zip(closest, ("mu1", "mu2")):
        has = pair >= 0
        p = np.where(has, pair, 0)
        out[f"{tag}_dr"] = np.where(has, dr[p] if dr.size else 0.5, 0.5)
        out[f"{tag}_pt"] = np.where(has, gp["pt"][gpi[p]] if dr.size else 0.0, 0.0)
        out[f"{tag}_deta"] = np.where(has, deta[p] if dr.size else 0.5, 0.5)
        out[f"{tag}_dphi"] = np.where(has, dphi[p] if dr.size else 0.5, 0.5)
    inside = (dr < 0.4) & (gp["pt"][gpi] > 3.0) if dr.size else np.zeros(0, bool)
    mu_pt_sum = np.bincount(ia[inside], weights=gp["pt"][gpi[inside]], minlength=n)
    out["share"] = np.clip(mu_pt_sum / np.maximum(gj["pt"], 1e-3), 0.0, 1.0)
    return out


def _eta_region(abseta: np.ndarray) -> np.ndarray:
    return np.digitize(abseta, [1.3, 2.5, 3.0])


_KN = np.array([1.0, 1.1, 1.4, 1.6])
_S = np.array([0.95, 1.05, 1.2, 1.35])
_C = np.array([0.035, 0.045, 0.06, 0.09])


def resolution(pt: np.ndarray, eta: np.ndarray, ntrue: np.ndarray) -> np.ndarray:
    """Relative core resolution σ/pT = √((N/pT)² + S²/pT + C²) (see module docstring)."""
    r = _eta_region(np.abs(eta))
    n = _KN[r] * (1.5 + 0.07 * ntrue)
    pt = np.maximum(pt, 1.0)
    return np.sqrt((n / pt) ** 2 + _S[r] ** 2 / pt + _C[r] ** 2)


def mean_response(pt, hadflav, partflav, share) -> np.ndarray:
    ap = np.abs(partflav)
    d = np.where(ap == 21, -0.02, np.where(ap == 0, -0.01, np.where(ap == 4, -0.01, 0.005)))
    b = hadflav == 5
    has_mu = share > 0
    d = np.where(b, np.where(has_mu, -0.05 - 0.06 * np.minimum(3.0 * share, 1.0), -0.02), d)
    return RESPONSE_SCALE + d * (1.0 + 0.5 * np.exp(-pt / 50.0))


def efficiency(pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    a = np.abs(eta)
    e = 1.0 - 0.5 * np.exp(-(pt - 10.0) / 8.0)
    e = e * np.where(a > 2.5, 0.97, 1.0) * np.where(a > 3.0, 0.95, 1.0)
    return np.clip(e, 0.0, 1.0)


def simulate_genjets(g: GenInput, seed: int) -> dict[str, np.ndarray]:
    """Reco candidates for every GenJet that is reconstructed with pT > 15 (flat arrays).

    Returns kinematics and all Jet_* variables (float64/int64, unrounded) plus ``evt`` (event
    index in the chunk) and ``genJetIdx`` (local GenJet index).
    """
    gj = g.genjet
    ntrue = g.pileup["Pileup_nTrueInt"][gj.evt]
    nz = ObjectNoise.for_objects(seed, "jet", g.run[gj.evt], g.lumi[gj.evt], g.event[gj.evt], gj.local)
    ctx = genjet_muon_context(g, ranked=False)
    pt, eta, phi, mass = gj["pt"], gj["eta"], gj["phi"], gj["mass"]
    hf, pf = gj["hadronFlavour"], gj["partonFlavour"]
    share = ctx["share"]

    mu = mean_response(pt, hf, pf, share)
    sig = resolution(pt, eta, ntrue)
    z = nz.normal("jet_response")
    ut = nz.uniform("jet_tail")
    semilep = (hf == 5) & (share > 0)
    p_low = np.where(semilep, 0.10, 0.04)
    low = ut < p_low
    wide = (~low) & (ut < p_low + 0.02)
    e = nz.exponential("jet_tail_exp")
    r = np.where(low, 1.0 - sig * (1.0 + 1.5 * e), np.where(wide, 1.0 + 3.0 * sig * z, 1.0 + sig * z))
    r = np.maximum(mu * r, 0.05)
    pt_reco = pt * r

    keep = (nz.uniform("jet_eff") < efficiency(pt, eta)) & (pt_reco > PT_MIN) & (np.abs(eta) < JET_MAX_ABS_ETA)
    idx = np.flatnonzero(keep)
    nz = nz.subset(idx)
    sl = lambda a: a[idx]  # noqa: E731
    pt, eta, phi, mass, hf, pf, share, mu, r, ntrue = map(sl, (pt, eta, phi, mass, hf, pf, share, mu, r, ntrue))
    tails = sl(low | wide)
    pt_reco = pt_reco[idx]

    sa = (0.006 + 0.4 / pt) * np.where(np.abs(eta) > 2.5, 1.6, 1.0) * np.where(tails, 3.0, 1.0)
    eta_reco = eta + sa * nz.normal("jet_deta")
    phi_reco = delta_phi(phi + sa * nz.normal("jet_dphi"), 0.0)
    sm = 0.25 + 2.0 / pt
    m_pu = 0.025 * ntrue * nz.exponential("jet_mass_pu")
    mass_reco = np.hypot(mass * r * np.exp(sm * nz.normal("jet_mass")), m_pu)

    has_mu = share > 0
    muef_mu = np.zeros(idx.size)
    w = np.flatnonzero(has_mu)  # draws only where needed (same numbers: keyed per jet)
    muef_mu[w] = np.minimum(share[w] / r[w] * (1.0 + 0.03 * nz.subset(w).normal("jet_muef")), 0.99)
    u_bg = nz.uniform("jet_muef_bg")  # u < 0.03: a soft muon-like deposit, 0.01·E with E = −ln(u/0.03)
    muef_bg = np.where(u_bg < 0.03, -0.01 * np.log(np.minimum(u_bg / 0.03, 1.0)), 0.0)
    muef = round_mantissa(np.clip(np.where(has_mu, muef_mu, muef_bg), 0.0, 0.99), NANOAOD_MANTISSA_BITS["Jet_muEF"])

    zb = nz.normal("jet_breg")
    e_b = np.zeros(idx.size)
    w = np.flatnonzero(hf == 5)
    e_b[w] = nz.subset(w).exponential("jet_breg_tail")
    low_pt = 0.15 * np.exp(-(pt - 15.0) / 50.0)  # the regression corrects soft jets upwards
    breg_b = 1.04 + low_pt + 0.5 * (mu - r) + 0.08 * has_mu + 0.05 * e_b + 0.04 * zb
    breg_l = 1.05 + low_pt + 0.3 * (mu - r) + 0.07 * zb
    breg = np.clip(np.where(hf == 5, breg_b, breg_l), 0.5, 2.0)

    out = {
        "evt": gj.evt[idx],
        "genJetIdx": gj.local[idx],
        "pt": pt_reco,
        "eta": eta_reco,
        "phi": phi_reco,
        "mass": mass_reco,
        "bRegCorr": breg,
        "muEF": muef,
        "hadronFlavour": hf,
        "partonFlavour": pf,
    }
    finish_jets(out, ntrue, np.zeros(idx.size, dtype=bool), nz)
    return out


def finish_jets(out: dict[str, np.ndarray], ntrue: np.ndarray, fake: np.ndarray, nz: ObjectNoise) -> None:
    """Add area, taggers, qgl, nConstituents, jetId, puId, the energy fractions and rawFactor
    (:mod:`.energy`) to ``out`` (in place).

    * area = 0.009973·k, k = round(50 + σ_k z) ≥ 20, σ_k = 2.5 + 40/pT (+2 for fakes);
    * jetId: 0 with probability 1 % (3 % for |η|>2.7, 5 % fakes), else 2 if muEF > 0.8
      (fails tightLepVeto), else 6;
    * puId from a score s = 0.8 + 0.04(pT − 15) − 0.025(nTrueInt − 25) − 0.8[|η|>2.5]
      − 0.4[|η|>3] + z (fakes: −0.4 − 0.025(nTrueInt − 25) + 0.02(pT − 15) + z):
      7 if s > 1, 6 if s > 0.5, 4 if s > 0, else 0; real jets with pT ≥ 50 get 7.
    """
    pt, eta = out["pt"], out["eta"]
    abseta = np.abs(eta)
    sk = 2.5 + 40.0 / np.maximum(pt, 1.0) + 2.0 * fake
    k = np.maximum(np.rint(50.0 + sk * nz.normal("jet_area")), 20.0)
    out["area"] = AREA_QUANTUM * k

    out.update(btag_scores(out["hadronFlavour"], out["partonFlavour"], pt, eta, fake, nz))
    qgl, ncon = qgl_and_constituents(out["partonFlavour"], pt, eta, ntrue, fake, nz)
    out["qgl"], out["nConstituents"] = qgl, ncon

    p0 = np.where(fake, 0.05, np.where(abseta > 2.7, 0.03, 0.01))
    jid = np.where(out["muEF"] > 0.8, 2, 6)
    out["jetId"] = np.where(nz.uniform("jet_id") < p0, 0, jid).astype(np.int64)

    zp = nz.normal("jet_puid")
    s_real = 0.8 + 0.04 * (pt - 15.0) - 0.025 * (ntrue - 25.0) - 0.8 * (abseta > 2.5) - 0.4 * (abseta > 3.0)
    s_fake = -0.4 - 0.025 * (ntrue - 25.0) + 0.02 * (pt - 15.0)
    s = np.where(fake, s_fake, s_real) + zp
    pu = np.where(s > 1.0, 7, np.where(s > 0.5, 6, np.where(s > 0.0, 4, 0)))
    out["puId"] = np.where((~fake) & (pt >= 50.0), 7, pu).astype(np.int64)

    out.update(energy_fractions(out["muEF"], eta, out["partonFlavour"], fake, nz))
    out["rawFactor"] = raw_factor(pt, eta, out["area"], ntrue, nz)
