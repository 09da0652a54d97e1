"""Event-level kinematic variables of the VBF H→μμ analysis (CMS, JHEP 01 (2021) 148).

All functions take flat (one row per event) :mod:`vector` numpy four-vectors
(``vector.array({"pt", "eta", "phi", "mass"})``) or numpy arrays and return numpy arrays;
they are vectorized over events (no Python loops).
"""

from __future__ import annotations

import numpy as np
import vector

__all__ = [
    "p4",
    "collins_soper",
    "cos_theta_cs_analytic",
    "zstar",
    "rpt",
    "mass_resolution",
    "min_delta_eta",
]

#: LHC beam energy (GeV); only the beam *directions* enter the Collins–Soper frame.
BEAM_ENERGY = 6500.0


def p4(pt, eta, phi, mass) -> vector.MomentumNumpy4D:
    """Flat numpy four-vectors from (pt, eta, phi, mass) arrays (float64)."""
    cols = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (pt, eta, phi, mass)))
    return vector.array(dict(zip(("pt", "eta", "phi", "mass"), cols)))


def cos_theta_cs_analytic(mu_minus: vector.MomentumNumpy4D, mu_plus: vector.MomentumNumpy4D) -> np.ndarray:
    """Analytic Collins–Soper polar angle (particle 1 = μ−, particle 2 = μ+):

        cos θ_CS = sign(pz_μμ) · 2 (P1⁺ P2⁻ − P1⁻ P2⁺) / (m_μμ · sqrt(m_μμ² + pT_μμ²)),
        Pi^± = (E_i ± pz_i) / √2.

    ``sign(0)`` is taken as +1.
    """
    mm = mu_minus + mu_plus
    p1p, p1m = (mu_minus.E + mu_minus.pz) / np.sqrt(2), (mu_minus.E - mu_minus.pz) / np.sqrt(2)
    p2p, p2m = (mu_plus.E + mu_plus.pz) / np.sqrt(2), (mu_plus.E - mu_plus.pz) / np.sqrt(2)
    sign = np.where(mm.pz < 0, -1.0, 1.0)
    m = mm.mass
    return sign * 2.0 * (p1p * p2m - p1m * p2p) / (m * np.sqrt(m**2 + mm.pt**2))


def collins_soper(mu_minus: vector.MomentumNumpy4D, mu_plus: vector.MomentumNumpy4D) -> tuple[np.ndarray, np.ndarray]:
    """(cos θ_CS, φ_CS) of the μ− in the Collins–Soper frame, by an explicit boost.

    Both beams, P_a = (0, 0, +E_b, E_b) and P_b = (0, 0, −E_b, E_b), and the μ− are boosted
    into the dimuon rest frame. With unit vectors â, b̂ of the boosted beams, the CS axes are

        ẑ = (â − b̂)/|â − b̂|,   ŷ = (â × b̂)/|â × b̂|,   x̂ = ŷ × ẑ,

    where beam "a" is the one moving along the dimuon's longitudinal direction (the
    ``sign(pz_μμ)`` convention of the analytic formula, :func:`cos_theta_cs_analytic`). Then
    cos θ_CS = p̂·ẑ and φ_CS = atan2(p̂·ŷ, p̂·x̂) ∈ (−π, π] with p̂ the μ− direction.
    For a dimuon with pT = 0 the x/y axes are undefined and φ_CS is returned as 0.
    """
    mm = mu_minus + mu_plus
    sign = np.where(mm.pz < 0, -1.0, 1.0)
    zero = np.zeros_like(sign)
    beam_a = vector.array({"px": zero, "py": zero, "pz": sign * BEAM_ENERGY, "E": zero + BEAM_ENERGY})
    beam_b = vector.array({"px": zero, "py": zero, "pz": -sign * BEAM_ENERGY, "E": zero + BEAM_ENERGY})
    a = beam_a.boostCM_of_p4(mm).to_xyz().unit()
    b = beam_b.boostCM_of_p4(mm).to_xyz().unit()
    mu = mu_minus.boostCM_of_p4(mm).to_xyz().unit()
    z_axis = (a - b).unit()
    cross = a.cross(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        y_axis = cross.unit()
    x_axis = y_axis.cross(z_axis)
    cos_theta = mu.dot(z_axis)
    phi = np.arctan2(mu.dot(y_axis), mu.dot(x_axis))
    phi = np.where(cross.mag > 0, phi, 0.0)
    return np.asarray(cos_theta), np.asarray(phi)


def zstar(dimuon: vector.MomentumNumpy4D, j1: vector.MomentumNumpy4D, j2: vector.MomentumNumpy4D) -> np.ndarray:
    """Zeppenfeld variable with rapidities: z* = |(y_μμ − (y_j1 + y_j2)/2) / (y_j1 − y_j2)|."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs((dimuon.rapidity - 0.5 * (j1.rapidity + j2.rapidity)) / (j1.rapidity - j2.rapidity))


def rpt(dimuon: vector.MomentumNumpy4D, j1: vector.MomentumNumpy4D, j2: vector.MomentumNumpy4D) -> np.ndarray:
    """pT balance R(pT) = |p⃗T(μμ) + p⃗T(j1) + p⃗T(j2)| / (pT(μμ) + pT(j1) + pT(j2))."""
    px = dimuon.px + j1.px + j2.px
    py = dimuon.py + j1.py + j2.py
    return np.hypot(px, py) / (dimuon.pt + j1.pt + j2.pt)


def mass_resolution(mass, pt1, pt_err1, pt2, pt_err2) -> np.ndarray:
    """Per-event dimuon mass resolution from the muon pT errors:

        Δm = sqrt( (m · ptErr1 / (2 pt1))² + (m · ptErr2 / (2 pt2))² ).
    """
    mass = np.asarray(mass, dtype=np.float64)
    return np.hypot(mass * np.asarray(pt_err1) / (2.0 * np.asarray(pt1)), mass * np.asarray(pt_err2) / (2.0 * np.asarray(pt2)))


def min_delta_eta(dimuon: vector.MomentumNumpy4D, j1: vector.MomentumNumpy4D, j2: vector.MomentumNumpy4D) -> np.ndarray:
    """min(|η_μμ − η_j1|, |η_μμ − η_j2|)."""
    return np.minimum(np.abs(dimuon.eta - j1.eta), np.abs(dimuon.eta - j2.eta))
