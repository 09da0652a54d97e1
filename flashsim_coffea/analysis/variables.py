"""The analysis variables, computed from :class:`~flashsim_coffea.analysis.candidates.Candidates`.

Per event (NaN where the needed objects are missing), with μμ = μ1 + μ2 and j1, j2 the two
leading selected jets:

======================  ===================================================================
``mass``                m_μμ
``mass_res``            Δm_μμ = sqrt((m·ptErr1/(2 pt1))² + (m·ptErr2/(2 pt2))²)
``mass_res_rel``        Δm_μμ / m_μμ
``mumu_pt``             pT(μμ);  ``mumu_log_pt`` = ln pT(μμ)
``mumu_eta``            η(μμ);  ``mumu_phi`` = φ(μμ)
``cos_theta_cs``        analytic Collins–Soper cos θ (μ− is particle 1), see kinematics
``phi_cs``              Collins–Soper φ from the boost to the dimuon rest frame
``rpt``                 R(pT) = |p⃗T(μμ)+p⃗T(j1)+p⃗T(j2)| / (pT(μμ)+pT(j1)+pT(j2))
``log_zstar``           ln z*,  z* = |(y_μμ − (y_j1+y_j2)/2)/(y_j1 − y_j2)|, floored at 1e-6
``j1_pt`` … ``j2_phi``  pT, η, φ of j1 and j2
``j1_qgl``, ``j2_qgl``  their quark–gluon score ``qgScore`` (QGL in Run 2; see objects)
``mjj``                 m_jj = m(j1 + j2);  ``log_mjj`` = ln m_jj
``detajj``              |η_j1 − η_j2|
``min_deta``            min(|η_μμ − η_j1|, |η_μμ − η_j2|)
``mu1_iso``             pfRelIso04_all of μ1 (the leading selected muon)
======================  ===================================================================

:data:`VARIABLES` gives each variable's label and binning for histograms; ``dnn_atanh``
(DNN18Atan = atanh(score), filled by :func:`~flashsim_coffea.analysis.pipeline.analyse`) has
25 bins over [0, 2.5).
"""

from __future__ import annotations

import hist
import numpy as np

from . import kinematics as kin
from .candidates import Candidates

__all__ = ["VARIABLES", "ZSTAR_FLOOR", "compute_variables", "axis_for"]

ZSTAR_FLOOR = 1e-6

#: name -> (label, bins, low, high)
VARIABLES: dict[str, tuple[str, int, float, float]] = {
    "mass": (r"$m_{\mu\mu}$ [GeV]", 40, 110.0, 150.0),
    "mass_res": (r"$\Delta m_{\mu\mu}$ [GeV]", 40, 0.0, 4.0),
    "mass_res_rel": (r"$\Delta m_{\mu\mu}/m_{\mu\mu}$", 40, 0.0, 0.03),
    "mumu_pt": (r"$p_T(\mu\mu)$ [GeV]", 40, 0.0, 400.0),
    "mumu_log_pt": (r"$\ln p_T(\mu\mu)$", 40, 0.0, 7.0),
    "mumu_eta": (r"$\eta(\mu\mu)$", 40, -5.0, 5.0),
    "mumu_phi": (r"$\phi(\mu\mu)$", 32, -np.pi, np.pi),
    "cos_theta_cs": (r"$\cos\theta_{CS}$", 40, -1.0, 1.0),
    "phi_cs": (r"$\phi_{CS}$", 32, -np.pi, np.pi),
    "rpt": (r"$R(p_T)$", 40, 0.0, 1.0),
    "log_zstar": (r"$\ln z^*$", 40, -7.0, 1.0),
    "j1_pt": (r"$p_T(j_1)$ [GeV]", 40, 0.0, 400.0),
    "j1_eta": (r"$\eta(j_1)$", 40, -4.7, 4.7),
    "j1_phi": (r"$\phi(j_1)$", 32, -np.pi, np.pi),
    "j2_pt": (r"$p_T(j_2)$ [GeV]", 40, 0.0, 200.0),
    "j2_eta": (r"$\eta(j_2)$", 40, -4.7, 4.7),
    "j2_phi": (r"$\phi(j_2)$", 32, -np.pi, np.pi),
    "j1_qgl": (r"QGL($j_1$)", 40, -1.0, 1.0),
    "j2_qgl": (r"QGL($j_2$)", 40, -1.0, 1.0),
    "mjj": (r"$m_{jj}$ [GeV]", 40, 0.0, 4000.0),
    "log_mjj": (r"$\ln m_{jj}$", 40, 5.0, 9.0),
    "detajj": (r"$|\Delta\eta_{jj}|$", 40, 0.0, 9.0),
    "min_deta": (r"min $\Delta\eta(\mu\mu, j)$", 40, 0.0, 7.0),
    "mu1_iso": (r"$\mu_1$ pfRelIso04_all", 25, 0.0, 0.25),
    # bins of 0.1 over 0–2.5: the shipped DNN's output is bounded by atanh(sigmoid(b + Σ|w|))
    # ≈ 2.29 (last layer's bias and weights, hidden units in [−1, 1]); see docs/analysis.md
    "dnn_atanh": (r"DNN18Atan = atanh(score)", 25, 0.0, 2.5),
}


def axis_for(name: str) -> hist.axis.Regular:
    """The histogram axis of variable ``name`` (from :data:`VARIABLES`)."""
    label, bins, lo, hi = VARIABLES[name]
    return hist.axis.Regular(bins, lo, hi, name=name, label=label)


def compute_variables(c: Candidates) -> dict[str, np.ndarray]:
    """All variables of the module docstring (except the DNN output) as float64 arrays."""
    mu1 = kin.p4(c.mu1["pt"], c.mu1["eta"], c.mu1["phi"], c.mu1["mass"])
    mu2 = kin.p4(c.mu2["pt"], c.mu2["eta"], c.mu2["phi"], c.mu2["mass"])
    j1 = kin.p4(c.j1["pt"], c.j1["eta"], c.j1["phi"], c.j1["mass"])
    j2 = kin.p4(c.j2["pt"], c.j2["eta"], c.j2["phi"], c.j2["mass"])
    mumu, jj = mu1 + mu2, j1 + j2
    # particle 1 of the Collins–Soper formulas is the μ−
    mu1_negative = (c.mu1["charge"] < 0)
    mu_minus = kin.p4(*(np.where(mu1_negative, c.mu1[f], c.mu2[f]) for f in ("pt", "eta", "phi", "mass")))
    mu_plus = kin.p4(*(np.where(mu1_negative, c.mu2[f], c.mu1[f]) for f in ("pt", "eta", "phi", "mass")))
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.asarray(mumu.mass)
        mass_res = kin.mass_resolution(mass, c.mu1["pt"], c.mu1["ptErr"], c.mu2["pt"], c.mu2["ptErr"])
        _, phi_cs = kin.collins_soper(mu_minus, mu_plus)
        mjj = np.asarray(jj.mass)
        out = {
            "mass": mass,
            "mass_res": mass_res,
            "mass_res_rel": mass_res / mass,
            "mumu_pt": np.asarray(mumu.pt),
            "mumu_log_pt": np.log(np.asarray(mumu.pt)),
            "mumu_eta": np.asarray(mumu.eta),
            "mumu_phi": np.asarray(mumu.phi),
            "cos_theta_cs": kin.cos_theta_cs_analytic(mu_minus, mu_plus),
            "phi_cs": phi_cs,
            "rpt": kin.rpt(mumu, j1, j2),
            "log_zstar": np.log(np.maximum(kin.zstar(mumu, j1, j2), ZSTAR_FLOOR)),
            "mjj": mjj,
            "log_mjj": np.log(mjj),
            "detajj": np.abs(c.j1["eta"] - c.j2["eta"]),
            "min_deta": kin.min_delta_eta(mumu, j1, j2),
            "mu1_iso": c.mu1["pfRelIso04_all"].copy(),
        }
    for j, src in (("j1", c.j1), ("j2", c.j2)):
        for f in ("pt", "eta", "phi"):
            out[f"{j}_{f}"] = src[f].copy()
        out[f"{j}_qgl"] = src["qgScore"].copy()
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
