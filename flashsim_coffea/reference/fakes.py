"""Pile-up fake jets: reco jets with no GenJet (``Jet_genJetIdx = −1``).

Per event n_fake ~ Poisson(0.045·nTrueInt) (real files: 2.3/event at ⟨nTrueInt⟩ = 34 in Run-2 CHS
(2017), 0.84/event at 36 in Run-3 PUPPI) (event-level key); fake i of the event is keyed
with object index −1 − i in the jet stream space (GenJets use 0, 1, …), so its noise never
collides with a real jet's. Per fake:

* pT = 15 + 6·E (E ~ Exp(1)): steeply falling from the threshold;
* η: 60 % forward, |η| ~ U(2.5, 4.7) with a random sign, else η ~ U(−2.5, 2.5); φ ~ U(−π, π);
* m = pT·|0.12 + 0.05 z|;
* flavours 0, muEF = 0, bRegCorr = 1.0 + 0.08 z;
* area, taggers (light-like), qgl (gluon-like latent), nConstituents (few: pT small),
  jetId and puId (mostly 0/4) from :func:`jets.finish_jets` with ``fake=True``.
"""

from __future__ import annotations

import numpy as np

from flashsim_coffea import noise

from ._inputs import GenInput, ObjectNoise
from .jets import finish_jets

__all__ = ["FAKE_RATE_PER_INTERACTION", "simulate_fakes"]

FAKE_RATE_PER_INTERACTION = 0.045


def simulate_fakes(g: GenInput, seed: int) -> dict[str, np.ndarray]:
    """Flat arrays of the pile-up fake jets of the chunk (same keys as ``simulate_genjets``)."""
    ntrue_ev = g.pileup["Pileup_nTrueInt"]
    n = noise.poisson(FAKE_RATE_PER_INTERACTION * np.maximum(ntrue_ev, 0.0), seed, "jet_fake_n", g.run, g.lumi, g.event)
    evt = np.repeat(np.arange(g.n_events, dtype=np.int64), n)
    first = np.concatenate([[0], np.cumsum(n)])[:-1]
    i = np.arange(evt.size, dtype=np.int64) - first[evt]
    nz = ObjectNoise.for_objects(seed, "jet", g.run[evt], g.lumi[evt], g.event[evt], -1 - i)
    ntrue = ntrue_ev[evt]
    pt = 15.0 + 6.0 * nz.exponential("fake_pt")
    fwd = nz.uniform("fake_forward") < 0.6
    u = nz.uniform("fake_eta")
    sign = np.where(nz.uniform("fake_eta_sign") < 0.5, -1.0, 1.0)
    eta = np.where(fwd, sign * (2.5 + 2.2 * u), -2.5 + 5.0 * u)
    phi = -np.pi + 2.0 * np.pi * nz.uniform("fake_phi")
    mass = pt * np.abs(0.12 + 0.05 * nz.normal("fake_mass"))
    zero = np.zeros(evt.size, dtype=np.int64)
    out = {
        "evt": evt,
        "genJetIdx": zero - 1,
        "pt": pt,
        "eta": eta,
        "phi": phi,
        "mass": mass,
        "bRegCorr": 1.0 + 0.08 * nz.normal("fake_breg"),
        "muEF": np.zeros(evt.size),
        "hadronFlavour": zero,
        "partonFlavour": zero.copy(),
    }
    finish_jets(out, ntrue, np.ones(evt.size, dtype=bool), nz)
    return out
