"""``run_validation``: samples → metrics.json, plots and index.md in REPORT_DIR.

``metrics.json`` has exactly the shape
``{"targets": {name: {"w1": .., "w1_floor": .., "ratio": ..}}, "c2st_auc": .., "conditional": {table: ..}}``
(``conditional``: the tables of :mod:`.conditional`, with noise floors and flagged cells);
run details (inputs, model, seeds, counts) go to ``provenance.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from flashsim_coffea import __version__
from flashsim_coffea.cards import file_record
from flashsim_coffea.flows.sampler import FlowModel
from flashsim_coffea.objects import ObjectSpec
from flashsim_coffea.reference.resimulate import reference_fingerprint

from . import plots
from .conditional import conditional_markdown, conditional_tables, efficiency_table
from .metrics import c2st_auc, w1_draws, w1_table
from .samples import ValidationSamples, build_samples

__all__ = ["run_validation", "write_report", "PAIRS", "FLOOR_DRAWS"]

#: default K: FlashSim folds and reference′ draws averaged in W1 and its floor
FLOOR_DRAWS = 5

#: 2-D contour pairs per spec (those of the reference FlashSim study, docs/analysis.md: taggers vs each other,
#: qgl vs nConstituents, pT vs mass)
PAIRS: dict[str, list[tuple[str, str]]] = {
    "jets": [("btagDeepB", "btagDeepC"), ("btagDeepFlavB", "btagDeepFlavC"), ("btagDeepB", "btagCSVV2"),
             ("btagDeepFlavB", "btagDeepB"), ("qgl", "nConstituents"), ("reco pt", "reco mass")],
    "muons": [("dxy", "dz"), ("dxyErr", "dzErr"), ("pfRelIso03_all", "pfRelIso04_all"), ("ip3d", "sip3d"),
              ("ptErr", "reco pt")],
}


def _column(spec: ObjectSpec, s: ValidationSamples, name: str, which: str) -> np.ndarray:
    """A target column, or 'reco pt'/'reco mass' rebuilt from ratio targets and Gen."""
    data = s.ref if which == "ref" else s.ref  # Gen objects are those of the reference sample
    mat = s.flash if which == "flash" else s.ref.targets
    if name.startswith("reco "):
        field = name[5:]
        t = next(t for t in spec.targets if t.branch == field)
        return t.to_reco(mat[:, spec.target_names.index(t.name)], data.gen.get(t.gen_field))
    return mat[:, spec.target_names.index(name)]


def comparable(spec: ObjectSpec, mat: np.ndarray, gen: dict[str, np.ndarray]) -> np.ndarray:
    """Target matrix with each ``scaled`` target replaced by its reco value (ip3d rather than
    ip3d / √(dxy² + (dz/cosh η)²)): what W1, C2ST and the plots compare."""
    scaled = [j for j, t in enumerate(spec.targets) if t.relation == "scaled"]
    if not scaled:
        return mat
    reco = spec.rebuild({n: mat[:, j] for j, n in enumerate(spec.target_names)}, gen, precision=False)
    out = np.array(mat, dtype=np.float64, copy=True)
    for j in scaled:
        out[:, j] = reco[spec.targets[j].branch]
    return out


def write_report(spec: ObjectSpec, s: ValidationSamples, out: Path, title: str, seed: int = 0,
                 extra_tables: dict | None = None) -> dict:
    conditional = {**conditional_tables(spec, s), **(extra_tables or {})}
    s = ValidationSamples(replace(s.ref, targets=comparable(spec, s.ref.targets, s.ref.gen)),
                          [comparable(spec, f, s.ref.gen) for f in s.flash_draws],
                          [replace(r, targets=comparable(spec, r.targets, r.gen)) for r in s.ref2_draws], s.info)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    names = spec.target_names
    ref2_targets = [r.targets for r in s.ref2_draws]
    table = w1_table(names, s.flash_draws, s.ref.targets, ref2_targets)
    floors = w1_draws(names, ref2_targets, s.ref.targets)
    auc = c2st_auc(np.concatenate([s.flash, s.ref.cond], axis=1), np.concatenate([s.ref.targets, s.ref.cond], axis=1), seed)
    metrics = {"targets": table, "c2st_auc": auc, "conditional": conditional}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    plots.style()
    figs: list[tuple[str, str]] = []
    for j, t in enumerate(spec.targets):
        p = plots.hist1d(out / "plots" / f"{t.name}.png", t.name, s.flash[:, j], s.ref.targets[:, j], s.ref2.targets[:, j],
                         title, discrete=t.values if t.kind == "ordinal" else None)
        figs.append((f"1D: {t.name}", p.name))
    available = set(names) | {f"reco {t.branch}" for t in spec.targets if t.relation == "ratio"}
    for x, y in PAIRS.get(spec.name, []):
        if x in available and y in available:
            p = plots.contours(out / "plots" / f"contour_{x}_vs_{y}.png".replace(" ", "_"), x, y,
                               _column(spec, s, x, "flash"), _column(spec, s, y, "flash"),
                               _column(spec, s, x, "ref"), _column(spec, s, y, "ref"), title)
            figs.append((f"2D: {x} vs {y}", p.name))
    cond_names = spec.conditioning_names
    gen_pt = next((c for c in cond_names if c.endswith("_pt") and "0_" not in c and "Closest" not in c), None)
    if "ptRatio" in names and gen_pt:
        j = names.index("ptRatio")
        p = plots.profile(out / "plots" / "profile_ptRatio.png", gen_pt, "ptRatio", s.ref.cond[:, cond_names.index(gen_pt)],
                          s.flash[:, j], s.ref.targets[:, j], title)
        figs.append(("Profile: ptRatio vs Gen pT (mean ± RMS)", p.name))
    flav_name = next((c for c in cond_names if c.endswith("partonFlavour")), None)
    if flav_name and "btagDeepB" in names:
        flav = np.abs(s.ref.cond[:, cond_names.index(flav_name)])
        j = names.index("btagDeepB")
        ok = (s.ref.targets[:, j] >= 0) & (s.flash[:, j] >= 0)
        p = plots.flavour_hist(out / "plots" / "btagDeepB_by_flavour.png", "btagDeepB", flav[ok], s.flash[ok, j], s.ref.targets[ok, j], title)
        figs.append(("btagDeepB by parton flavour", p.name))
        p = plots.roc(out / "plots" / "roc_btagDeepB.png", "btagDeepB", flav, s.flash[:, j], s.ref.targets[:, j], title)
        figs.append(("b vs udsg ROC (btagDeepB)", p.name))

    lines = [f"# FlashSim validation: `{spec.name}` — {title}", "",
             f"{s.info['n_ref']} reference objects from {s.info['n_events']} held-out events "
             f"(reference′: {s.info['n_ref2']}). C2ST AUC (gradient-boosted trees on targets + conditioning): "
             f"**{auc:.4f}** (0.5 = indistinguishable).", "",
             f"W1 and its floor are means over K = {len(s.flash_draws)} independent draws (FlashSim folds 0..K−1; "
             "reference′ seeds ref-seed + 0..K−1); the last column shows the spread of the K single-draw floors.", "",
             "| target | W1(FlashSim, ref) | W1 floor (ref′, ref) | ratio | floor draws min–max |", "|---|---|---|---|---|"]
    for name, m in table.items():
        flag = "" if m["ratio"] <= 2 else " ⚠"
        lines.append(f"| {name} | {m['w1']:.4g} | {m['w1_floor']:.4g} | {m['ratio']:.2f}{flag} | "
                     f"{min(floors[name]):.3g}–{max(floors[name]):.3g} |")
    from ..inject import INFO_LABELS

    lines += ["", "Sampling (fold 0): " + ", ".join(f"{v:,} {INFO_LABELS.get(key, key)}" for key, v in s.info.items()
                                                 if key.startswith("n_") and key not in ("n_ref", "n_ref2", "n_events")), ""]
    for caption, fname in figs:
        lines += [f"### {caption}", "", f"![{caption}](plots/{fname})", ""]
    lines += conditional_markdown(conditional)
    (out / "index.md").write_text("\n".join(lines))
    return metrics


def _efficiency_tables(spec: ObjectSpec, model: FlowModel, files: list[str], ref_seed: int, max_events: int | None,
                       resimulate: int | None, floor_draws: int) -> dict:
    """The reconstruction-efficiency tables (:func:`.conditional.efficiency_table`) of the ``jets`` and
    ``muons`` specs on the held-out files: reference, ``floor_draws`` reference′ draws (seeds
    ref_seed + k) and FlashSim (the model with its efficiency map, ``floor_draws`` folds); {} for other specs."""
    if spec.name not in ("jets", "muons"):
        return {}
    from flashsim_coffea.objects import get_spec

    if get_spec(spec.name).hash() != spec.hash():  # FlashSim injects models of the registered specs only
        warnings.warn(f"validate {spec.name}: the spec given is not the registered {spec.name!r} spec (a revision?): "
                      "the reconstruction-efficiency tables, which inject through FlashSim, are skipped", stacklevel=2)
        return {}
    import awkward as ak
    import uproot

    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.reference.resimulate import resimulate_events

    parts, left = [], max_events
    for f in files:
        with uproot.open(f) as fh:
            tree = fh["Events"]
            stop = tree.num_entries if left is None else min(tree.num_entries, left)
            parts.append(tree.arrays(library="ak", entry_stop=stop))
        left = None if left is None else left - stop
        if left is not None and left <= 0:
            break
    events = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    if resimulate is not None:
        events = resimulate_events(events, resimulate, source=files[0])
    models = {"jets": False, "muons": False, spec.name: str(model.path)}
    flashsim = FlashSim(**models, pileup_jets=False, precision=model.precision)
    return efficiency_table(spec.name, events, flashsim, [ref_seed + k for k in range(floor_draws)], folds=floor_draws)


def run_validation(spec: ObjectSpec, model: FlowModel, files: list[str], out_dir: str | Path, ref_seed: int = 90210,
                   title: str | None = None, max_events: int | None = None, resimulate: int | None = None,
                   floor_draws: int = FLOOR_DRAWS) -> dict:
    t0 = time.time()
    out = Path(out_dir)
    samples = build_samples(spec, model, files, ref_seed, max_events, resimulate, draws=floor_draws)
    title = title or Path(files[0]).stem
    metrics = write_report(spec, samples, out, title,
                           extra_tables=_efficiency_tables(spec, model, files, ref_seed, max_events, resimulate, floor_draws))
    prov = {"spec": spec.name, "spec_hash": spec.hash(), "model": Path(str(model.path)).name,
            "model_weights_sha256": model.card.get("weights_sha256"), "precision": model.precision,
            "model_metrics": model.card.get("metrics"),
            "inputs": [file_record(f) for f in files],
            "reference_prime_seeds": [ref_seed + k for k in range(floor_draws)], "flashsim_folds": list(range(floor_draws)),
            "reference": "file" if resimulate is None else f"reference.respond(seed {resimulate})",
            "reference_fingerprint": reference_fingerprint(), **samples.info,
            "seconds": round(time.time() - t0, 1), "package_version": __version__}
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    return metrics
