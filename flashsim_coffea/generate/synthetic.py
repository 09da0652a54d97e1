"""Synthetic Gen events (numpy only) for tests and benchmarks of the reference response.

Not physics: a fast, vectorized generator of NanoAOD-shaped Gen branches with the features
the reference response reacts to. Each event has 2 + Poisson(2) GenJets (pT = 10·(1−u)^{−1/2},
η ~ N(0, 2) clipped to ±4.7, flavours drawn b 8 %, c 10 %, gluon 40 %, light 35 %,
undefined 7 %) and three GenPart slots [X, μ₁, μ₂] of one of these kinds:

* ``prompt`` (45 %): X = Z (23), two isolated prompt muons (statusFlags isPrompt, fromHardProcess,
  isFirstCopy, isLastCopy), pT 15–80 GeV, random directions in |η| < 2.4;
* ``b`` (25 %) / ``c`` (10 %): GenJet 0 is made a b (c) jet in |η| < 2.4, X = B⁰ (511) / D⁰ (421),
  μ₁ its daughter (isDirectHadronDecayProduct) inside the jet (ΔR ~ |N(0, 0.1)|) carrying a
  U(0.05, 0.5) share of the jet pT;
* ``tau`` (5 %): X = τ (15), μ₁ isDirectPromptTauDecayProduct, isolated;
* ``pion`` (5 %): X = π⁺ (211), μ₁ (no flags) inside GenJet 0 (decay in flight);
* ``none`` (10 %): photons only.

Slots without a muon hold soft photons (pdgId 22).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

__all__ = ["synthetic_gen"]

KINDS = ("prompt", "b", "c", "tau", "pion", "none")
KIND_P = (0.45, 0.25, 0.10, 0.05, 0.05, 0.10)
F_PROMPT = 1 | (1 << 8) | (1 << 12) | (1 << 13)
F_HADRON = (1 << 6) | (1 << 12) | (1 << 13)
F_TAU = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 12) | (1 << 13)


def synthetic_gen(
    n_events: int, seed: int = 0, ntrue_range: tuple[float, float] = (10.0, 60.0),
    with_pileup_extras: bool = True,
) -> dict[str, ak.Array | np.ndarray]:
    """Gen branches of ``n_events`` synthetic events (see module docstring); returns a dict."""
    rng = np.random.default_rng(seed)
    n = n_events
    kind = rng.choice(len(KINDS), size=n, p=KIND_P)
    nj = 2 + rng.poisson(2.0, size=n)
    tot = int(nj.sum())
    off = np.concatenate([[0], np.cumsum(nj)])
    first = off[:-1]
    pt = np.minimum(10.0 * (1.0 - rng.random(tot)) ** -0.5, 3000.0)
    eta = np.clip(rng.normal(0.0, 2.0, tot), -4.7, 4.7)
    phi = rng.uniform(-np.pi, np.pi, tot)
    mass = pt * rng.uniform(0.03, 0.15, tot)
    u = rng.random(tot)
    had = np.where(u < 0.08, 5, np.where(u < 0.18, 4, 0))
    light = rng.choice([1, 2, 3, -1, -2, -3], size=tot)
    part = np.where(had == 5, 5, np.where(had == 4, 4, np.where(u < 0.58, 21, np.where(u < 0.93, light, 0))))
    part = part * np.where((had > 0) & (rng.random(tot) < 0.5), -1, 1)
    # GenJet 0 of b / c / pion events: flavour and a central direction
    b_ev, c_ev, pi_ev = kind == 1, kind == 2, kind == 4
    had[first[b_ev]], part[first[b_ev]] = 5, 5
    had[first[c_ev]], part[first[c_ev]] = 4, -4
    had[first[pi_ev]], part[first[pi_ev]] = 0, 1
    inj = first[b_ev | c_ev | pi_ev]
    eta[inj] = rng.uniform(-2.2, 2.2, inj.size)
    pt[inj] = np.maximum(pt[inj], 20.0)

    # GenPart: three slots per event
    gp_pdg = np.full((n, 3), 22)
    gp_status = np.ones((n, 3), dtype=np.int64)
    gp_flags = np.zeros((n, 3), dtype=np.int64)
    gp_mother = np.full((n, 3), -1)
    gp_pt = rng.uniform(0.5, 3.0, (n, 3))
    gp_eta = rng.uniform(-2.4, 2.4, (n, 3))
    gp_phi = rng.uniform(-np.pi, np.pi, (n, 3))
    gp_mass = np.zeros((n, 3))
    gp_status[:, 0] = 2
    gp_pdg[:, 0] = np.select([kind == 0, kind == 1, kind == 2, kind == 3, kind == 4], [23, 511, 421, 15, 211], 22)
    gp_mass[:, 0] = np.select([kind == 0, kind == 1, kind == 2, kind == 3, kind == 4], [91.19, 5.28, 1.86, 1.777, 0.1396], 0.0)
    gp_pt[:, 0] = rng.uniform(5.0, 60.0, n)
    prompt = kind == 0
    gp_pdg[prompt, 1], gp_pdg[prompt, 2] = 13, -13
    gp_flags[prompt, 1:] = F_PROMPT
    gp_mother[prompt, 1:] = 0
    gp_pt[prompt, 1:] = rng.uniform(15.0, 80.0, (int(prompt.sum()), 2))
    tau = kind == 3
    gp_pdg[tau, 1] = rng.choice([13, -13], size=int(tau.sum()))
    gp_flags[tau, 1] = F_TAU
    gp_flags[tau, 0] = 1
    gp_mother[tau, 1] = 0
    gp_pt[tau, 1] = rng.uniform(8.0, 50.0, int(tau.sum()))
    inside = b_ev | c_ev | pi_ev
    k = int(inside.sum())
    j0 = first[inside]
    gp_pdg[inside, 1] = rng.choice([13, -13], size=k)
    gp_flags[inside, 1] = np.where(kind[inside] == 4, 0, F_HADRON)
    gp_mother[inside, 1] = 0
    gp_pt[inside, 1] = pt[j0] * rng.uniform(0.05, 0.5, k)
    dr = np.abs(rng.normal(0.0, 0.1, k))
    ang = rng.uniform(0, 2 * np.pi, k)
    gp_eta[inside, 1] = eta[j0] + dr * np.cos(ang)
    gp_phi[inside, 1] = (phi[j0] + dr * np.sin(ang) + np.pi) % (2 * np.pi) - np.pi
    gp_eta[inside, 0], gp_phi[inside, 0] = eta[j0], phi[j0]
    gp_pt[inside, 0] = pt[j0] * 0.7
    gp_mass[np.abs(gp_pdg) == 13] = 0.10566

    ntrue = rng.uniform(*ntrue_range, n).astype(np.float32)
    three = np.full(n, 3)

    def jag(x, counts, dtype):
        return ak.unflatten(np.asarray(x).astype(dtype).ravel(), counts)

    out: dict[str, ak.Array | np.ndarray] = {
        "run": np.ones(n, dtype=np.uint32),
        "luminosityBlock": (1 + np.arange(n) // 1000).astype(np.uint32),
        "event": (1 + np.arange(n)).astype(np.uint64) + np.uint64(1000 * seed),
        "Pileup_nTrueInt": ntrue,
        "GenJet_pt": jag(pt, nj, np.float32),
        "GenJet_eta": jag(eta, nj, np.float32),
        "GenJet_phi": jag(phi, nj, np.float32),
        "GenJet_mass": jag(mass, nj, np.float32),
        "GenJet_partonFlavour": jag(part, nj, np.int32),
        "GenJet_hadronFlavour": jag(had, nj, np.uint8),
        "GenPart_pt": jag(gp_pt, three, np.float32),
        "GenPart_eta": jag(gp_eta, three, np.float32),
        "GenPart_phi": jag(gp_phi, three, np.float32),
        "GenPart_mass": jag(gp_mass, three, np.float32),
        "GenPart_pdgId": jag(gp_pdg, three, np.int32),
        "GenPart_status": jag(gp_status, three, np.int32),
        "GenPart_statusFlags": jag(gp_flags, three, np.int32),
        "GenPart_genPartIdxMother": jag(gp_mother, three, np.int32),
    }
    if with_pileup_extras:
        out["Pileup_nPU"] = rng.poisson(ntrue).astype(np.int32)
        out["Pileup_pudensity"] = (ntrue / 60.0).astype(np.float32)
        out["Pileup_gpudensity"] = (ntrue / 60.0).astype(np.float32)
        out["Pileup_sumEOOT"] = rng.poisson(12.0 * ntrue).astype(np.int32)
        out["Pileup_sumLOOT"] = rng.poisson(3.0 * ntrue).astype(np.int32)
    return out
