"""Compare the reference detector response with real CMS NanoAOD on the same Gen events.

    python scripts/compare_reference_real.py [--data-dir ../shared/data/real-nanoaod]
        [--figures docs/figures] [--seed 1] [--json docs/reference_comparison.json]

For each real CMS file (Run-2 ``nano_dy.root``, Run-3 ``nano_tt_v12.root``) the Gen branches
are fed to ``flashsim_coffea.reference.respond``; reco objects matched to Gen
(``Jet_genJetIdx`` ≥ 0, ``Muon_genPartIdx`` ≥ 0) are compared between the real file and the
reference: 1-D Wasserstein distances (``scipy.stats.wasserstein_distance``) and overlay
figures ``docs/figures/reference_<variable>.png`` (mplhep CMS style). A Markdown table is
printed (and JSON written with ``--json``). The samples are tiny (40 and 200 events): only
gross disagreements are meaningful: the "floor" column is the W1 a sample of the real size
drawn from the reference itself would typically show. To beat the statistical noise of the reference, the
Gen events are simulated ``--folds`` times with different seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import awkward as ak
import numpy as np
from scipy.stats import wasserstein_distance

from flashsim_coffea.plotting import project_label
from flashsim_coffea.reference import respond

ROOT = Path(__file__).resolve().parents[1]
FILES = {"DY Run-2": "nano_dy.root", "tt Run-3 v12": "nano_tt_v12.root"}
GEN_PREFIXES = ("GenJet_", "GenPart_", "Pileup_")


def load(path: Path) -> tuple[dict, dict]:
    import uproot

    t = uproot.open(path)["Events"]
    keys = t.keys()
    gen_keys = [k for k in keys if k.startswith(GEN_PREFIXES) or k in ("run", "luminosityBlock", "event")]
    reco_keys = [k for k in keys if k.startswith(("Jet_", "Muon_"))]
    return t.arrays(gen_keys, how=dict), t.arrays(reco_keys, how=dict)


def flat(a) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a)).astype(np.float64)


def gather(gen_branch, index) -> tuple[np.ndarray, np.ndarray]:
    """(mask, values): flat gen values at the per-event local ``index`` (mask: valid index)."""
    counts = ak.to_numpy(ak.num(gen_branch))
    off = np.concatenate([[0], np.cumsum(counts)])
    idx = flat(index).astype(np.int64)
    evt = np.repeat(np.arange(len(counts)), ak.to_numpy(ak.num(index)))
    ok = (idx >= 0) & (idx < counts[evt])
    vals = flat(gen_branch)
    return ok, np.where(ok, vals[np.where(ok, off[evt] + idx, 0)] if vals.size else np.nan, np.nan)


def matched_quantities(gen: dict, reco: dict) -> dict[str, np.ndarray]:
    """Flat per-object quantities of matched jets/muons (real or reference, same code)."""
    out: dict[str, np.ndarray] = {}
    m, gpt = gather(gen["GenJet_pt"], reco["Jet_genJetIdx"])
    _, gm = gather(gen["GenJet_mass"], reco["Jet_genJetIdx"])
    out["jet_ptRatio"] = (flat(reco["Jet_pt"]) / gpt)[m]
    out["jet_massRatio"] = np.clip(flat(reco["Jet_mass"]) / np.maximum(gm, 1e-3), 0.0, 7.0)[m]  # clip [0, 7] as the reference FlashSim study
    hf = flat(reco["Jet_hadronFlavour"])[m]
    eta = np.abs(flat(reco["Jet_eta"]))[m]
    pt = flat(reco["Jet_pt"])[m]
    for f, name in ((0, "light"), (4, "c"), (5, "b")):
        sel = (hf == f) & (eta < 2.4)
        out[f"jet_btagDeepFlavB_{name}"] = flat(reco["Jet_btagDeepFlavB"])[m][sel]
        if "Jet_btagDeepB" in reco:
            x = flat(reco["Jet_btagDeepB"])[m][sel]
            out[f"jet_btagDeepB_{name}"] = x[x >= 0]
    out["jet_nConstituents"] = flat(reco["Jet_nConstituents"])[m]
    if "Jet_qgl" in reco:
        q = flat(reco["Jet_qgl"])[m]
        out["jet_qgl"] = q[(q >= 0) & (pt > 20) & (eta < 2.4)]
    for v in ("bRegCorr", "area"):
        if f"Jet_{v}" in reco:
            out[f"jet_{v}"] = flat(reco[f"Jet_{v}"])[m]
    if "Jet_puId" in reco:
        out["jet_puId_pt<50"] = flat(reco["Jet_puId"])[m][pt < 50]
    evt = np.repeat(np.arange(len(reco["Jet_pt"])), ak.to_numpy(ak.num(reco["Jet_pt"])))
    out["jet_unmatched_per_event"] = np.bincount(evt[~m], minlength=len(reco["Jet_pt"])).astype(np.float64)
    mm, gpp = gather(gen["GenPart_pt"], reco["Muon_genPartIdx"])
    out["muon_ptRatio"] = (flat(reco["Muon_pt"]) / gpp)[mm]
    for v in ("pfRelIso04_all", "dxy", "dz", "sip3d", "dxyErr"):
        out[f"muon_{v}"] = flat(reco[f"Muon_{v}"])[mm]
    out["muon_relPtErr"] = (flat(reco["Muon_ptErr"]) / flat(reco["Muon_pt"]))[mm]
    return out


# variable -> (x label, histogram range, log-y)
SPEC = {
    "jet_ptRatio": ("Jet $p_T$ / GenJet $p_T$", (0.3, 1.8), False),
    "jet_massRatio": ("Jet mass / GenJet mass (clipped to [0, 7])", (0.0, 7.0), False),
    "jet_btagDeepFlavB_light": ("btagDeepFlavB (light jets, |$\\eta$|<2.4)", (0, 1), True),
    "jet_btagDeepFlavB_c": ("btagDeepFlavB (c jets)", (0, 1), True),
    "jet_btagDeepFlavB_b": ("btagDeepFlavB (b jets)", (0, 1), True),
    "jet_btagDeepB_light": ("btagDeepB (light jets, defined)", (0, 1), True),
    "jet_btagDeepB_b": ("btagDeepB (b jets, defined)", (0, 1), True),
    "jet_nConstituents": ("Jet nConstituents", (0, 60), False),
    "jet_qgl": ("Jet qgl ($p_T$>20, |$\\eta$|<2.4)", (0, 1), False),
    "jet_bRegCorr": ("Jet bRegCorr", (0.6, 1.8), False),
    "jet_area": ("Jet area", (0.3, 0.7), False),
    "jet_puId_pt<50": ("Jet puId ($p_T$<50)", (-0.5, 7.5), False),
    "jet_unmatched_per_event": ("unmatched (pile-up) jets per event", (-0.5, 8.5), False),
    "muon_ptRatio": ("Muon $p_T$ / Gen $p_T$", (0.9, 1.1), False),
    "muon_pfRelIso04_all": ("Muon pfRelIso04_all", (0, 1.0), True),
    "muon_dxy": ("Muon dxy [cm]", (-0.05, 0.05), True),
    "muon_dz": ("Muon dz [cm]", (-0.1, 0.1), True),
    "muon_sip3d": ("Muon sip3d", (0, 20), True),
    "muon_dxyErr": ("Muon dxyErr [cm]", (0, 0.006), False),
    "muon_relPtErr": ("Muon ptErr / pt", (0, 0.05), False),
}


def w1(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return None
    return float(wasserstein_distance(a, b))


def w1_floor(ref: np.ndarray, n: int, trials: int = 30, seed: int = 0) -> float | None:
    """Statistical floor: median W1 between ``n`` reference values and the whole reference.

    A real sample of size ``n`` that follows the reference exactly would show about this W1.
    """
    ref = ref[np.isfinite(ref)]
    if n == 0 or ref.size <= n:
        return None
    rng = np.random.default_rng(seed)
    return float(np.median([wasserstein_distance(rng.choice(ref, n, replace=False), ref) for _ in range(trials)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".." / "shared" / "data" / "real-nanoaod")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--folds", type=int, default=20, help="reference simulations of each Gen event")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-figures", action="store_true")
    a = ap.parse_args()

    results: dict[str, dict[str, dict]] = {}
    samples: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for label, fn in FILES.items():
        path = a.data_dir / fn
        if not path.exists():
            print(f"skipping {label}: {path} not found")
            continue
        gen, reco = load(path)
        real = matched_quantities(gen, reco)
        folds = [matched_quantities(gen, respond(gen, seed=a.seed + k, source=str(path))) for k in range(a.folds)]
        ref = {k: np.concatenate([f[k] for f in folds]) for k in folds[0]}
        samples[label] = {k: (real[k], ref[k]) for k in real if k in ref}
        results[label] = {}
        for k, (x, y) in samples[label].items():
            results[label][k] = {
                "W1": w1(x, y), "n_real": int(x.size), "W1_floor": w1_floor(y, int(x.size)),
                "mean_real": float(np.nanmean(x)) if x.size else None,
                "mean_ref": float(np.nanmean(y)) if y.size else None,
                "scale": float(np.nanstd(x)) if x.size > 1 else None,
            }

    # markdown table
    labels = list(results)
    print("| variable | " + " | ".join(f"{lb}: W1 (floor) | n real | mean real / ref" for lb in labels) + " |")
    print("|---|" + "---|---|---|" * len(labels))
    for k in SPEC:
        cells = []
        for lb in labels:
            r = results[lb].get(k)
            if r is None or r["W1"] is None:
                cells += ["–", "–", "–"]
            else:
                fl_ = "–" if r["W1_floor"] is None else f"{r['W1_floor']:.3g}"
                cells += [f"{r['W1']:.3g} ({fl_})", str(r["n_real"]), f"{r['mean_real']:.3g} / {r['mean_ref']:.3g}"]
        if any(c != "–" for c in cells):
            print(f"| {k} | " + " | ".join(cells) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=1))
    if not a.no_figures:
        make_figures(samples, a.figures)


def make_figures(samples, outdir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    outdir.mkdir(parents=True, exist_ok=True)
    for k, (xlabel, rng, logy) in SPEC.items():
        have = [lb for lb in samples if k in samples[lb] and samples[lb][k][0].size]
        if not have:
            continue
        fig, axes = plt.subplots(1, len(have), figsize=(9 * len(have), 8), squeeze=False)
        for ax, lb in zip(axes[0], have):
            x, y = samples[lb][k]
            integer = k.startswith(("jet_puId", "jet_unmatched"))
            bins = np.arange(rng[0], rng[1] + 1) if integer else np.linspace(*rng, 31)
            hx, _ = np.histogram(np.clip(x, bins[0], bins[-1] - 1e-9), bins)
            hy, _ = np.histogram(np.clip(y, bins[0], bins[-1] - 1e-9), bins)
            wdt = np.diff(bins)
            nx, ny = max(hx.sum(), 1), max(hy.sum(), 1)
            hep.histplot(hy / ny / wdt, bins, ax=ax, label=f"reference (stand-in), {len(y)}", color="tab:blue", lw=2)
            hep.histplot(hx / nx / wdt, bins, yerr=np.sqrt(hx) / nx / wdt, histtype="errorbar", ax=ax,
                         label=f"CMS NanoAOD, {len(x)}", color="black")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("density")
            if logy:
                ax.set_yscale("log")
            ax.legend(fontsize=16, title=f"W1 = {w1(x, y):.3g}", title_fontsize=16)
            project_label(ax, lb, fontsize=18, com=None)
        fig.tight_layout()
        fig.savefig(outdir / f"reference_{k.replace('<', 'lt')}.png", dpi=60)
        plt.close(fig)


if __name__ == "__main__":
    main()
