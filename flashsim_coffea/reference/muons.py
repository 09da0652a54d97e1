"""Reference response of Gen muons: one reco candidate per status-1 Gen muon.

Candidates: |pdgId| = 13, status 1, |η| < 2.4, pT > 3 GeV; noise keyed on the GenPart index.

* **Origin** (``Muon_genPartFlav``): NanoAOD's own rule
  (:func:`flashsim_coffea.nanoaod.derived.muon_gen_part_flav`): 1 if statusFlags bit 0
  (isPrompt); 15 if bit 5 (isDirectPromptTauDecayProduct); else 5 (b), 4 (c) or 3 (light or
  unknown) from the flavours met walking ``genPartIdxMother`` up through decayed (status 2)
  particles.
* **Efficiency** ε = 0.985·(1 − e^{−(pT − 2.5)/3})·(0.96 if 0.2<|η|<0.3: chimney cracks)
  ·(0.97 if non-prompt); reco pT > 3 kept.
* **Momentum** in curvature: 1/pT_reco = (1/pT)(1 + σ z), σ = √(0.009² + (1e-4 pT)²)·
  (1 + 1.5 (|η|/2.4)²), with 5 % of muons at 2.5 σ (tails). ptErr = pT_reco·σ·e^{0.1 z'}.
  Δη ~ N(0, 0.0005 + 0.002/pT), Δφ ~ N(0, 0.0003 + 0.01/pT). Charge flip probability
  1e-4·pT/100.
* **Impact parameters** (cm): resolution σ_xy = √(0.0010² + (0.012/pT)²)(1 + 0.2|η|),
  σ_z = √(0.0025² + (0.04/pT)²)(1 + 0.35 η²)^{1/2}; true displacement
  d = s·cτ·E·U (s = ±1, E ~ Exp(1), U ~ U(0,1)) with cτ = 0 (prompt), 0.02 (τ, effective),
  0.045 (b), 0.025 (c), 0.2 (light: decays in flight); dz_true likewise ×√cosh η.
  Per event, the primary vertex is a pile-up one with probability 0.004 + 0.0003 nTrueInt:
  every muon of that event gets dz += Δz, Δz ~ N(0, 5 cm). dxy = d + σ_xy ε (ε ~ N(0,1),
  3 N(0,1) for 5 %); dxyErr = σ_xy e^{0.12 z}; likewise dz. ip3d = √(dxy² + (dz/cosh η)²),
  sip3d = ip3d/√(dxyErr² + (dzErr/cosh η)²).
* **Isolation** (absolute sums in GeV; A = activity of the closest GenJet within ΔR < 0.4
  without the muon, A = max(pT_jet − pT_μ, 0), f = max(1 − 1.2 ΔR, 0.3)): charged from the
  PV ch04 = 0.6 A f L₁ + B·0.4 E₁ (B Bernoulli(0.5)), neutral n04 = 0.4 A f L₂ + 0.02 nTrueInt E₂,
  charged pile-up pu04 = 0.04 nTrueInt E₃ (L lognormal(0, 0.3)). The 0.3 cone keeps
  0.7 of the jet term and 0.5625 of the diffuse terms. Δβ-corrected
  pfRelIso = (ch + max(0, n − 0.5 pu))/pT (the zero spike), pfRelIso03_chg = ch03/pT.
  Tracker isolation (tracks with pT > 0.7 GeV of the muon's vertex in ΔR < 0.3, the charged
  sums of the PV plus 15 % of the pile-up tracks in 30 % of the events' muons:
  tk03 = (0.7·jet_ch·e^{0.1 z} + 0.5625 ue_ch) + 0.15·pu03·B'), tkRelIso = tk03/pT, with
  tk03 < 0.5 GeV written as 0 (no track above threshold: the zero spike of isolated muons).
  Mini-isolation in the cone R = 10 GeV/pT clamped to [0.05, 0.2]: the jet terms scale with
  a_j = √(R/0.4), the diffuse ones with a_d = (R/0.4)², and the neutral pile-up correction is
  an effective-area one, ρ·EA·a_d with ρ·EA = 0.3·pu04 (so mini-isolation is 0 more often for
  isolated muons and smaller than pfRelIso04 for muons in jets, as in the real files):
  miniPFRelIso_all = (ch + ne)/pT with ch = a_j jet_ch + a_d ue_ch (0 below 0.5 GeV),
  ne = max(0, a_j jet_ne + a_d ue_ne − 0.3 a_d pu04) (0 below 1 GeV).
* **jetPtRelv2** (if the muon is in a reco jet) = pT_μ·ΔR_rest·e^{0.1 z}, ΔR_rest = min(ΔR·pT_jet/A, 0.6)
  the distance of the jet-minus-muon axis (0.05 + 0.3 U when A < 0.5 GeV).
* **IDs** from a quality latent q ~ N(μ_q, 1) (μ_q = 1.5 prompt/τ, 0.8 b/c, −0.3 light,
  −0.5 at pT<5): isTracker (p = 0.995), isGlobal (p = 0.99 − 0.3 e^{−(pT−3)/4}),
  isPFcand = (isGlobal ∨ isTracker) ∧ (u < 0.995), looseId = isPFcand ∧ (isGlobal ∨ isTracker),
  mediumId = looseId ∧ q > −0.6, tightId = mediumId ∧ isGlobal ∧ q > 0 ∧ |dxy|<0.2 ∧ |dz|<0.5,
  softId = isTracker ∧ q > −1.5 ∧ |dxy|<0.3 ∧ |dz|<20.
  highPtId (NanoAOD: 1 = tracker high-pT, 2 = global high-pT): 2 if isGlobal ∧ q > −0.1 ∧
  ptErr/pT < 0.3 ∧ |dxy| < 0.2 ∧ |dz| < 0.5 (so tight muons are global high-pT ones, and 2–5 %
  of the others too, as in the real files); else 1 if isTracker ∧ ¬isGlobal ∧ q > −0.3 ∧
  |dxy| < 0.2 ∧ |dz| < 0.5 (soft tracker muons: 15 % at 3–10 GeV in the real tt̄ file); else 0.
* **softMva** = (tanh(0.55 + 0.15 q + 0.05 ln(pT/10) − 0.4[light origin] + 0.15 z) (as stored, 6 bits),
  softMvaId = softId ∧ softMva > 0.58.
"""

from __future__ import annotations

import numpy as np

from flashsim_coffea import noise
from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS, round_mantissa

from flashsim_coffea.nanoaod.conventions import MUON_MASS, MUON_MAX_ABS_ETA, MUON_MIN_PT, delta_phi
from flashsim_coffea.nanoaod.derived import muon_gen_part_flav, muon_loose_id, muon_pdg_id

from ._inputs import GenInput, ObjectNoise, closest_in_cone, is_gen_muon, pairs_within

__all__ = ["gen_muon_origin", "simulate_muons", "TRACK_SUM_MIN", "NEUTRAL_SUM_MIN"]

#: charged (neutral) sums of the tracker and mini-isolations below these (GeV) are empty cones:
#: no track above its 0.5–1 GeV threshold (no neutral candidate) — their zero spikes
TRACK_SUM_MIN, NEUTRAL_SUM_MIN = 0.5, 1.0

def gen_muon_origin(g: GenInput, mu: np.ndarray) -> np.ndarray:
    """``Muon_genPartFlav`` (1, 15, 5, 4, 3) of the Gen muons at flat GenPart indices ``mu``:
    NanoAOD's rule, :func:`flashsim_coffea.nanoaod.derived.muon_gen_part_flav`."""
    gp = g.genpart
    return muon_gen_part_flav(mu, gp["pdgId"], gp["status"], gp["statusFlags"], gp["genPartIdxMother"], gp.offsets)


def _closest_genjet(g: GenInput, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dr, pt, mass) of the closest GenJet within ΔR < 0.4 of each muon (0.5, 0, 0 if none)."""
    gp, gj = g.genpart, g.genjet
    counts = np.bincount(gp.evt[mu], minlength=g.n_events)
    off = np.concatenate([[0], np.cumsum(counts)])
    ia, ib = pairs_within(counts, gj.counts, off, gj.offsets)
    dr = np.hypot(gp["eta"][mu[ia]] - gj["eta"][ib], delta_phi(gp["phi"][mu[ia]], gj["phi"][ib]))
    j = closest_in_cone(ia, ib, dr, mu.size)
    has = j >= 0
    jj = np.where(has, j, 0)
    if len(gj) == 0:
        return np.full(mu.size, 0.5), np.zeros(mu.size), np.zeros(mu.size)
    d = np.where(has, np.hypot(gp["eta"][mu] - gj["eta"][jj], delta_phi(gp["phi"][mu], gj["phi"][jj])), 0.5)
    pt = np.where(has, gj["pt"][jj], 0.0)
    m = np.where(has, gj["mass"][jj], 0.0)
    return d, pt, m


_CTAU = {1: 0.0, 15: 0.02, 5: 0.045, 4: 0.025, 3: 0.2}


def simulate_muons(g: GenInput, seed: int) -> dict[str, np.ndarray]:
    """Flat arrays of the reconstructed muons (unsorted, unrounded) with ``evt`` and
    ``genPartIdx`` (local GenPart index); see the module docstring for the model."""
    gp = g.genpart
    cand = is_gen_muon(gp) & (np.abs(gp["eta"]) < MUON_MAX_ABS_ETA) & (gp["pt"] > MUON_MIN_PT)
    mu = np.flatnonzero(cand)
    evt = gp.evt[mu]
    nz = ObjectNoise.for_objects(seed, "muon", g.run[evt], g.lumi[evt], g.event[evt], gp.local[mu])
    pt, eta, phi = gp["pt"][mu], gp["eta"][mu], gp["phi"][mu]
    pdg = gp["pdgId"][mu]
    origin = gen_muon_origin(g, mu)
    nonprompt = (origin != 1) & (origin != 15)
    abseta = np.abs(eta)

    eff = 0.985 * (1.0 - np.exp(-(pt - 2.5) / 3.0))
    eff = eff * np.where((abseta > 0.2) & (abseta < 0.3), 0.96, 1.0) * np.where(nonprompt, 0.97, 1.0)
    sig = np.sqrt(0.009**2 + (1e-4 * pt) ** 2) * (1.0 + 1.5 * (abseta / 2.4) ** 2)
    tail = nz.uniform("mu_tail") < 0.05
    z = nz.normal("mu_response") * np.where(tail, 2.5, 1.0)
    pt_reco = pt / np.maximum(1.0 + sig * z, 0.05)
    keep = (nz.uniform("mu_eff") < eff) & (pt_reco > 3.0)
    idx = np.flatnonzero(keep)
    nz = nz.subset(idx)
    mu, evt, pt, eta, phi, pdg, origin, nonprompt, abseta, sig, pt_reco = (
        a[idx] for a in (mu, evt, pt, eta, phi, pdg, origin, nonprompt, abseta, sig, pt_reco)
    )
    ntrue = g.pileup["Pileup_nTrueInt"][evt]
    out: dict[str, np.ndarray] = {"evt": evt, "genPartIdx": gp.local[mu], "genPartFlav": origin}
    out["pt"] = pt_reco
    out["ptErr"] = pt_reco * sig * np.exp(0.1 * nz.normal("mu_pterr"))
    out["eta"] = eta + (0.0005 + 0.002 / pt) * nz.normal("mu_deta")
    out["phi"] = delta_phi(phi + (0.0003 + 0.01 / pt) * nz.normal("mu_dphi"), 0.0)
    out["mass"] = np.full(idx.size, MUON_MASS)
    charge = np.where(pdg > 0, -1, 1)
    flip = nz.uniform("mu_charge_flip") < 1e-4 * pt / 100.0
    charge = np.where(flip, -charge, charge)
    out["charge"] = charge
    out["pdgId"] = muon_pdg_id(charge)

    # impact parameters
    cosh = np.cosh(eta)
    s_xy = np.sqrt(0.0010**2 + (0.012 / pt) ** 2) * (1.0 + 0.2 * abseta)
    s_z = np.sqrt(0.0025**2 + (0.04 / pt) ** 2) * np.sqrt(1.0 + 0.35 * eta**2)
    ctau = np.select([origin == k for k in _CTAU], list(_CTAU.values()), 0.0)
    # one uniform gives the sign (v < 1/2) and an independent U(0,1) = |2v − 1|
    v_xy, v_z = 2.0 * nz.uniform("mu_dxy_angle") - 1.0, 2.0 * nz.uniform("mu_dz_angle") - 1.0
    dxy_true = ctau * nz.exponential("mu_dxy_len") * v_xy
    dz_true = ctau * np.sqrt(cosh) * nz.exponential("mu_dz_len") * v_z
    # wrong primary vertex: event-level
    p_wrong = 0.004 + 0.0003 * g.pileup["Pileup_nTrueInt"]
    u_pv = noise.uniform(seed, "mu_wrong_pv", g.run, g.lumi, g.event)
    shift = np.where(u_pv < p_wrong, 5.0 * noise.normal(seed, "mu_wrong_pv_dz", g.run, g.lumi, g.event), 0.0)
    dz_true = dz_true + shift[evt]
    ip_tail = np.where(nz.uniform("mu_ip_tail") < 0.05, 3.0, 1.0)
    out["dxy"] = dxy_true + s_xy * ip_tail * nz.normal("mu_dxy")
    out["dz"] = dz_true + s_z * ip_tail * nz.normal("mu_dz")
    out["dxyErr"] = s_xy * np.exp(0.12 * nz.normal("mu_dxyerr"))
    out["dzErr"] = s_z * np.exp(0.12 * nz.normal("mu_dzerr"))
    out["ip3d"] = np.hypot(out["dxy"], out["dz"] / cosh)
    out["sip3d"] = out["ip3d"] / np.hypot(out["dxyErr"], out["dzErr"] / cosh)

    # isolation
    jdr, jpt, _ = _closest_genjet(g, mu)
    act = np.maximum(jpt - pt, 0.0)
    f = np.maximum(1.0 - 1.2 * jdr, 0.3) * (jpt > 0)
    jet_ch = 0.6 * act * f * np.exp(0.3 * nz.normal("mu_iso_l1"))
    jet_ne = 0.4 * act * f * np.exp(0.3 * nz.normal("mu_iso_l2"))
    u_ue = nz.uniform("mu_iso_ue")  # u < 1/2: no charged UE; else E = −ln(2u − 1) ~ Exp(1)
    ue_ch = np.where(u_ue < 0.5, 0.0, -0.4 * np.log(np.maximum(2.0 * u_ue - 1.0, 1e-300)))
    ue_ne = 0.02 * ntrue * nz.exponential("mu_iso_e2")
    pu_ch = 0.04 * ntrue * nz.exponential("mu_iso_e3")
    ch04, ne04 = jet_ch + ue_ch, jet_ne + ue_ne
    ch03, ne03, pu03 = 0.7 * jet_ch + 0.5625 * ue_ch, 0.7 * jet_ne + 0.5625 * ue_ne, 0.5625 * pu_ch
    out["pfRelIso04_all"] = (ch04 + np.maximum(ne04 - 0.5 * pu_ch, 0.0)) / pt_reco
    out["pfRelIso03_all"] = (ch03 + np.maximum(ne03 - 0.5 * pu03, 0.0)) / pt_reco
    out["pfRelIso03_chg"] = ch03 / pt_reco
    pu_tracks = np.where(nz.uniform("mu_tkiso_pu") < 0.3, 0.15 * pu03, 0.0)
    tk03 = 0.7 * jet_ch * np.exp(0.1 * nz.normal("mu_tkiso")) + 0.5625 * ue_ch + pu_tracks
    out["tkRelIso"] = np.where(tk03 < TRACK_SUM_MIN, 0.0, tk03) / pt_reco
    cone = np.clip(10.0 / pt_reco, 0.05, 0.2)
    a_j, a_d = np.sqrt(cone / 0.4), (cone / 0.4) ** 2
    mini_ch = a_j * jet_ch + a_d * ue_ch
    mini_ne = np.maximum(a_j * jet_ne + a_d * ue_ne - 0.3 * a_d * pu_ch, 0.0)
    mini = np.where(mini_ch < TRACK_SUM_MIN, 0.0, mini_ch) + np.where(mini_ne < NEUTRAL_SUM_MIN, 0.0, mini_ne)
    out["miniPFRelIso_all"] = mini / pt_reco
    # pT relative to the jet-minus-muon axis, used if the muon ends up inside a reco jet:
    # the remainder of a jet whose axis is at ΔR = d from the muon sits at d·pT_jet/A.
    dr_rest = np.where(
        act > 0.5, np.minimum(jdr * jpt / np.maximum(act, 0.5), 0.6), 0.05 + 0.3 * nz.uniform("mu_ptrel_dr")
    )
    out["ptRelIfJet"] = pt_reco * dr_rest * np.exp(0.1 * nz.normal("mu_ptrel"))

    # identification
    mq = np.where(nonprompt, np.where(origin == 3, -0.3, 0.8), 1.5) - 0.5 * (pt < 5.0)
    q = mq + nz.normal("mu_quality")
    is_tracker = nz.uniform("mu_is_tracker") < 0.995
    is_global = nz.uniform("mu_is_global") < 0.99 - 0.3 * np.exp(-(pt - 3.0) / 4.0)
    is_pf = (is_global | is_tracker) & (nz.uniform("mu_is_pf") < 0.995)
    loose = muon_loose_id(is_pf, is_global, is_tracker)
    medium = loose & (q > -0.6)
    tight = medium & is_global & (q > 0.0) & (np.abs(out["dxy"]) < 0.2) & (np.abs(out["dz"]) < 0.5)
    soft = is_tracker & (q > -1.5) & (np.abs(out["dxy"]) < 0.3) & (np.abs(out["dz"]) < 20.0)
    mva = np.tanh(0.55 + 0.15 * q + 0.05 * np.log(pt / 10.0) - 0.4 * (origin == 3) + 0.15 * nz.normal("mu_softmva"))
    mva = round_mantissa(mva, NANOAOD_MANTISSA_BITS["Muon_softMva"])  # the Id cut sees the stored value
    good_ip = (np.abs(out["dxy"]) < 0.2) & (np.abs(out["dz"]) < 0.5)
    global_high_pt = is_global & (q > -0.1) & (out["ptErr"] / pt_reco < 0.3) & good_ip
    tracker_high_pt = is_tracker & ~is_global & (q > -0.3) & good_ip
    out["highPtId"] = np.where(global_high_pt, 2, np.where(tracker_high_pt, 1, 0))
    out.update(
        isGlobal=is_global, isTracker=is_tracker, isPFcand=is_pf, looseId=loose, mediumId=medium,
        tightId=tight, softId=soft, softMva=mva, softMvaId=soft & (mva > 0.58),
    )
    return out
