"""Flavour taggers, quark–gluon likelihood and constituent multiplicity of jets.

Two shared per-jet latents make the outputs correlated like the real ones:

* **b-ness** ``l`` (a logit): a three-mode mixture, l ~ N(c_m, s_m) with modes
  low (c=−4.0, s=0.9), mid (−1.2, 1.0), high (3.2, 1.4). Mode probabilities depend on the
  hadron flavour (b: high 0.80 minus pT/η losses, mid 0.18; c: high 0.08, mid 0.45;
  light: high 0.008, mid 0.045, 0.07 for gluons (g→bb̄ splitting)). Beyond the tracker
  (|η| > 2.5) every jet is in the low mode. Then, with independent tagger noise ε_t ~ N(0,1),

      DeepB     = σ(l + 0.35 ε₁)              DeepFlavB = σ(1.1 l + 0.3 + 0.45 ε₂)
      CSVV2     = σ(0.8 l + 0.8 + 0.6 ε₃)     CMVA      = tanh(0.45 (l + 0.5 + 0.5 ε₄))
      DeepC     = (1 − DeepB)·σ(l_c + 0.3 ε₅)  DeepFlavC = (1 − DeepFlavB)·σ(1.1 l_c + 0.35 ε₆)

  with σ the logistic function and the charm latent l_c = b_f + 0.3 (mode = mid) + 0.8 ε_c
  (b_f = −2.6 light, −0.4 c, −1.6 b), so DeepB + DeepC ≤ 1 as for the real probabilities.
  DeepB/DeepC/CSVV2/CMVA are −1 ("undefined", no tracks) beyond |η| > 2.5 and for 0.5 % of
  jets inside (DeepFlav is always defined).

* **quark-ness** ``g ~ N(m_f, 1)``, m = +0.7 (quarks, |partonFlavour| 1–5), −0.7 (gluons),
  0 (undefined), −0.4 (pile-up fakes). Constituents

      λ = [4 + 10 (pT/30)^0.4 e^{−0.25 g}]·(0.6 if |η| > 2.5) + 0.05·nTrueInt
      nConstituents = 1 + Poisson(λ − 1)

  and qgl = σ(2 g + 1 − 1.2 ln(n/λ_q) + 0.5 ε_q) with λ_q the quark expectation, so qgl is
  high for quarks, low for gluons and anti-correlated with nConstituents.
"""

from __future__ import annotations

import numpy as np

from ._inputs import ObjectNoise

__all__ = ["btag_scores", "qgl_and_constituents", "sigmoid"]

_MODES = {"low": (-4.0, 0.9), "mid": (-1.2, 1.0), "high": (3.2, 1.4)}
UNDEFINED_INSIDE = 0.005


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _mode_probabilities(hadflav, partflav, pt, abseta, fake):
    """(p_high, p_mid) per jet."""
    is_b = hadflav == 5
    is_c = hadflav == 4
    p_hi_b = 0.80 - 0.10 * (abseta > 1.4) - 0.15 * np.exp(-(pt - 15.0) / 20.0)
    p_hi_b -= 0.10 * np.clip((pt - 300.0) / 700.0, 0.0, 1.0)
    p_hi = np.where(is_b, p_hi_b, np.where(is_c, 0.08, 0.008))
    p_mid_l = np.where(np.abs(partflav) == 21, 0.07, 0.045)
    p_mid = np.where(is_b, 0.18, np.where(is_c, 0.45, p_mid_l))
    p_hi = np.where(fake, 0.004, p_hi)
    p_mid = np.where(fake, 0.04, p_mid)
    out = abseta > 2.5
    return np.where(out, 0.0, p_hi), np.where(out, 0.0, p_mid)


def btag_scores(
    hadflav: np.ndarray, partflav: np.ndarray, pt: np.ndarray, eta: np.ndarray,
    fake: np.ndarray, nz: ObjectNoise,
) -> dict[str, np.ndarray]:
    """The six taggers (float64, before precision rounding); see the module docstring."""
    abseta = np.abs(eta)
    p_hi, p_mid = _mode_probabilities(hadflav, partflav, pt, abseta, fake)
    u = nz.uniform("btag_mode")
    hi = u < p_hi
    mid = (~hi) & (u < p_hi + p_mid)
    c = np.where(hi, _MODES["high"][0], np.where(mid, _MODES["mid"][0], _MODES["low"][0]))
    s = np.where(hi, _MODES["high"][1], np.where(mid, _MODES["mid"][1], _MODES["low"][1]))
    lat = c + s * nz.normal("btag_latent")
    base_c = np.where(hadflav == 4, -0.4, np.where(hadflav == 5, -1.6, -2.6))
    base_c = np.where(abseta > 2.5, -3.0, base_c)
    lat_c = base_c + 0.3 * mid + 0.8 * nz.normal("ctag_latent")

    deepb = sigmoid(lat + 0.35 * nz.normal("btag_deepb"))
    deepflavb = sigmoid(1.1 * lat + 0.3 + 0.45 * nz.normal("btag_deepflavb"))
    csvv2 = sigmoid(0.8 * lat + 0.8 + 0.6 * nz.normal("btag_csvv2"))
    cmva = np.tanh(0.45 * (lat + 0.5 + 0.5 * nz.normal("btag_cmva")))
    deepc = (1.0 - deepb) * sigmoid(lat_c + 0.3 * nz.normal("ctag_deepc"))
    deepflavc = (1.0 - deepflavb) * sigmoid(1.1 * lat_c + 0.35 * nz.normal("ctag_deepflavc"))

    undefined = (abseta > 2.5) | (nz.uniform("btag_notracks") < UNDEFINED_INSIDE)
    out = {
        "btagCMVA": cmva,
        "btagCSVV2": csvv2,
        "btagDeepB": deepb,
        "btagDeepC": deepc,
        "btagDeepFlavB": deepflavb,
        "btagDeepFlavC": deepflavc,
    }
    for k in ("btagCMVA", "btagCSVV2", "btagDeepB", "btagDeepC"):
        out[k] = np.where(undefined, -1.0, out[k])
    return out


def quark_mean(partflav: np.ndarray, fake: np.ndarray) -> np.ndarray:
    ap = np.abs(partflav)
    m = np.where((ap >= 1) & (ap <= 5), 0.7, np.where(ap == 21, -0.7, 0.0))
    return np.where(fake, -0.4, m)


def qgl_and_constituents(
    partflav: np.ndarray, pt: np.ndarray, eta: np.ndarray, ntrue: np.ndarray,
    fake: np.ndarray, nz: ObjectNoise,
) -> tuple[np.ndarray, np.ndarray]:
    """(qgl float64 in [0, 1], nConstituents int64 ≥ 1); see the module docstring."""
    g = quark_mean(partflav, fake) + nz.normal("qg_latent")
    fwd = np.where(np.abs(eta) > 2.5, 0.6, 1.0)
    scale = 10.0 * (np.maximum(pt, 1.0) / 30.0) ** 0.4
    lam = (4.0 + scale * np.exp(-0.25 * g)) * fwd + 0.05 * ntrue
    lam_q = (4.0 + scale * np.exp(-0.25 * 0.7)) * fwd + 0.05 * ntrue
    n = 1 + nz.poisson(np.maximum(lam - 1.0, 1e-3), "n_constituents")
    qgl = sigmoid(2.0 * g + 1.0 - 1.2 * np.log(n / lam_q) + 0.5 * nz.normal("qgl_noise"))
    return qgl, n
