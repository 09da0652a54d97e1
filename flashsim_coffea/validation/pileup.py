"""Validation of FlashSim pile-up jets (``Jet_genJetIdx = −1``) against the reference's own.

On held-out pile-up-only events (:func:`~flashsim_coffea.objects.extract.pileup_gen_events`:
the generator's ``Pileup_*`` profile, no Gen objects — the reference's pile-up jets depend on
nothing else) the reference response is drawn twice, R (seed ``ref_seed``) and R′ (seed
``ref_seed2``, the noise floor: what statistics and the reference's own randomness give), and
FlashSim draws its pile-up jets (count model + flow, fold 0, exactly as injected, 15 GeV
threshold included). Compared:

* the multiplicity per nTrueInt bin: ⟨n⟩, P(n ≥ 1), P(n ≥ 2) for F, R, R′ (± their statistical errors);
* per variable W1(F, R) and its floor W1(R′, R), ratio = W1/floor (≈ 1: as good as a second
  reference draw); the fractions of the discrete puId and jetId values and of forward jets (|η| > 2.5).

:func:`write_pileup_report` (``flashsim validate pileup_jets -o DIR``) writes ``report.md``,
``metrics.json`` and ``pileup_jets.png`` to a directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["validate_pileup_jets", "write_pileup_report", "SPEC", "NTRUE_BINS", "CONTINUOUS", "DISCRETE"]

#: the spec validated here (``flashsim validate pileup_jets``)
SPEC = "pileup_jets"

NTRUE_BINS = (0, 20, 30, 40, 50, 100)
CONTINUOUS = ("pt", "eta", "phi", "mass", "area", "nConstituents", "qgl", "btagDeepFlavB", "btagDeepB", "btagCSVV2",
              "bRegCorr", "rawFactor", "chHEF", "neHEF", "chEmEF", "neEmEF", "btagDeepFlavCvL")
DISCRETE = {"puId": (0, 4, 6, 7), "jetId": (0, 2, 6)}


def _reference(events_gen: dict, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The reference's pile-up jets (flat branches) and their number per event."""
    from flashsim_coffea.reference import respond

    reco = respond(events_gen, seed=seed)
    pu = reco["Jet_genJetIdx"] < 0
    flat = {k[4:]: ak.to_numpy(ak.flatten(v[pu])).astype(np.float64) for k, v in reco.items() if k.startswith("Jet_")}
    return flat, ak.to_numpy(ak.sum(pu, axis=1))


def _flashsim(model_path: str | Path, events_gen: dict, fold: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """FlashSim's pile-up jets of fold ``fold`` (the injection's own code path) and their number per event."""
    from flashsim_coffea.flows.bundle import load_bundle
    from flashsim_coffea.folds import FoldBatch
    from flashsim_coffea.inject import PreparedChunk

    model = load_bundle(model_path)  # flow + count model (+ efficiency map), as FlashSim injects them
    events = ak.Array(events_gen)
    chunk = PreparedChunk(events, {model.spec.reco: [model]})
    n = len(events)
    batch = FoldBatch(np.arange(n, dtype=np.int64), np.full(n, fold, dtype=np.int64), fold + 1, n)
    jets = chunk.simulate(model.spec.reco, batch, attach=False)
    flat = {f: ak.to_numpy(ak.flatten(jets[f])).astype(np.float64) for f in ak.fields(jets)}
    return flat, ak.to_numpy(ak.num(jets, axis=1))


def _multiplicity(ntrue: np.ndarray, counts: np.ndarray) -> list[dict]:
    rows = []
    for lo, hi in zip(NTRUE_BINS[:-1], NTRUE_BINS[1:]):
        m = (ntrue >= lo) & (ntrue < hi)
        c = counts[m]
        k = max(int(m.sum()), 1)
        p1, p2 = float(np.mean(c >= 1)) if m.any() else 0.0, float(np.mean(c >= 2)) if m.any() else 0.0
        rows.append({"bin": [lo, hi], "events": int(m.sum()), "mean": float(c.mean()) if m.any() else 0.0,
                     "mean_err": float(c.std() / np.sqrt(k)) if m.any() else 0.0,
                     "p_ge1": p1, "p_ge1_err": float(np.sqrt(p1 * (1 - p1) / k)),
                     "p_ge2": p2, "p_ge2_err": float(np.sqrt(p2 * (1 - p2) / k))})
    return rows


def validate_pileup_jets(model_path: str | Path, n_events: int = 200_000, gen_seed: int = 2, ref_seed: int = 201,
                         ref_seed2: int = 202, fold: int = 0) -> tuple[dict, dict]:
    """Metrics (JSON-able) and the samples ({"F"|"R"|"R2": (flat jets, counts)}, "ntrue") of
    FlashSim pile-up jets vs the reference on ``n_events`` held-out pile-up-only events."""
    from flashsim_coffea.objects.extract import pileup_gen_events

    gen = pileup_gen_events(n_events, seed=gen_seed * 1000)
    ntrue = np.asarray(gen["Pileup_nTrueInt"], dtype=np.float64)
    samples = {"F": _flashsim(model_path, gen, fold), "R": _reference(gen, ref_seed), "R2": _reference(gen, ref_seed2)}
    (f, nf), (r, nr), (r2, nr2) = samples["F"], samples["R"], samples["R2"]
    metrics: dict = {
        "events": n_events, "gen_seed": gen_seed * 1000, "ref_seed": ref_seed, "ref_seed2": ref_seed2, "fold": fold,
        "jets": {"F": int(nf.sum()), "R": int(nr.sum()), "R2": int(nr2.sum())},
        "multiplicity": {k: _multiplicity(ntrue, c) for k, c in (("F", nf), ("R", nr), ("R2", nr2))},
        "w1": {}, "fractions": {},
    }
    for v in CONTINUOUS:
        w, floor = wasserstein_distance(f[v], r[v]), wasserstein_distance(r2[v], r[v])
        metrics["w1"][v] = {"w1": float(w), "floor": float(floor), "ratio": float(w / floor) if floor > 0 else float("inf")}
    for v, values in DISCRETE.items():
        metrics["fractions"][v] = {str(x): {k: float(np.mean(s[v] == x)) for k, s in (("F", f), ("R", r), ("R2", r2))}
                                   for x in values}
    metrics["fractions"]["|eta| > 2.5"] = {"yes": {k: float(np.mean(np.abs(s["eta"]) > 2.5)) for k, s in
                                                   (("F", f), ("R", r), ("R2", r2))}}
    samples["ntrue"] = ntrue
    return metrics, samples


def _figure(path: Path, metrics: dict, samples: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (f, nf), (r, nr), (r2, nr2) = samples["F"], samples["R"], samples["R2"]
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    ax = axes[0, 0]
    centres = [0.5 * (lo + hi) for lo, hi in zip(NTRUE_BINS[:-1], NTRUE_BINS[1:])]
    for key, label, style in (("R", "reference", "ko"), ("R2", "reference′", "g^"), ("F", "FlashSim", "rs")):
        rows = metrics["multiplicity"][key]
        ax.errorbar(centres, [x["mean"] for x in rows], [x["mean_err"] for x in rows], fmt=style, label=label, ms=5,
                    mfc="none" if key != "R" else None)
    ax.set_xlabel("Pileup_nTrueInt (bin centre)")
    ax.set_ylabel("pile-up jets per event")
    ax.legend()
    panels = [("pt", np.linspace(15, 80, 40), True), ("eta", np.linspace(-5, 5, 50), False),
              ("puId", np.arange(-0.5, 8.5, 1.0), False), ("jetId", np.arange(-0.5, 7.5, 1.0), False),
              ("qgl", np.linspace(-1, 1, 40), False), ("btagDeepFlavB", np.linspace(0, 1, 40), True),
              ("nConstituents", np.arange(0.5, 40.5, 1.0), False)]
    for ax, (v, edges, log) in zip(axes.flat[1:], panels):
        for s, label, kw in ((r, "reference", {"color": "k"}), (r2, "reference′", {"color": "g", "ls": ":"}),
                             (f, "FlashSim", {"color": "r", "ls": "--"})):
            ax.hist(np.clip(s[v], edges[0], edges[-1]), edges, histtype="step", density=True, label=label, **kw)
        ax.set_xlabel(f"Jet_{v} (genJetIdx = −1)")
        if log:
            ax.set_yscale("log")
        if v in metrics["w1"]:
            ax.set_title(f"W1/floor = {metrics['w1'][v]['ratio']:.2f}", fontsize=10)
    axes[0, 1].legend()
    fig.suptitle(f"FlashSim pile-up jets vs reference: {metrics['events']} held-out pile-up events")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def write_pileup_report(model_path: str | Path, out_dir: str | Path, n_events: int = 200_000, gen_seed: int = 2,
                        ref_seed: int = 201, ref_seed2: int = 202) -> dict:
    """:func:`validate_pileup_jets`, then ``report.md``, ``metrics.json`` and ``pileup_jets.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, samples = validate_pileup_jets(model_path, n_events, gen_seed, ref_seed, ref_seed2)
    _figure(out / "pileup_jets.png", metrics, samples)
    lines = [f"# FlashSim pile-up jets vs reference ({metrics['events']} held-out pile-up events)", "",
             f"Pile-up jets: FlashSim {metrics['jets']['F']}, reference {metrics['jets']['R']}, reference′ "
             f"{metrics['jets']['R2']} (seeds: events {metrics['gen_seed']}, R {ref_seed}, R′ {ref_seed2}).", "",
             "| nTrueInt | events | ⟨n⟩ F | ⟨n⟩ R | ⟨n⟩ R′ | P(n≥2) F | P(n≥2) R | P(n≥2) R′ |", "|---|---|---|---|---|---|---|---|"]
    for rf, rr, rr2 in zip(*(metrics["multiplicity"][k] for k in ("F", "R", "R2"))):
        lines.append(f"| {rf['bin'][0]}–{rf['bin'][1]} | {rf['events']} | {rf['mean']:.3f} | {rr['mean']:.3f} ± "
                     f"{rr['mean_err']:.3f} | {rr2['mean']:.3f} | {rf['p_ge2']:.4f} | {rr['p_ge2']:.4f} ± "
                     f"{rr['p_ge2_err']:.4f} | {rr2['p_ge2']:.4f} |")
    lines += ["", "| variable | W1(F, R) | floor W1(R′, R) | ratio |", "|---|---|---|---|"]
    lines += [f"| {v} | {m['w1']:.4g} | {m['floor']:.4g} | {m['ratio']:.2f} |" for v, m in metrics["w1"].items()]
    lines += ["", "| fraction | F | R | R′ |", "|---|---|---|---|"]
    for v, vals in metrics["fractions"].items():
        lines += [f"| {v} = {x} | {p['F']:.4f} | {p['R']:.4f} | {p['R2']:.4f} |" for x, p in vals.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics

