"""Analysis-level closure: FlashSim vs the reference on the same Gen events, against a noise floor.

The library behind ``flashsim closure`` (docs/closure.md). For one reference file REF (Gen +
the reference detector response, i.e. this project's "FullSim"):

1. **Inputs, checked before any work** (:func:`check_inputs`): REF and REF2 are not ``flashsim
   simulate`` outputs (:func:`flashsim_coffea.nanoaod.io.check_reference`); REF has the Gen
   branches FlashSim and the reference response read, with counters that agree with them
   (:func:`~flashsim_coffea.nanoaod.io.check_counters`), no duplicate (run, luminosityBlock,
   event) with ``folds`` > 1 (:func:`~flashsim_coffea.nanoaod.io.check_duplicates`), the
   reco branches the fullsim mode reads and at least :data:`MIN_EVENTS` (200) events; REF2 (a second
   reference draw of the same Gen events) has the same events in the same order (run,
   luminosityBlock, event); when REF2 is not given it is drawn by
   :func:`flashsim_coffea.reference.resimulate.resimulate_file` with ``ref_seed`` into a
   temporary file (removed at the end), and ``ref_seed`` must differ from the seed that drew
   REF (read from the file's ``FlashSimMetadata`` when it has one) — the same seed would give
   the same draw.
2. **Three runs** of :class:`flashsim_coffea.processors.VBFHmmProcessor` through
   :func:`flashsim_coffea.runner.run_processor`, sharing one executor
   (:func:`~flashsim_coffea.runner.executor_session`): fullsim on REF ("reference"), fullsim on
   REF2 ("reference′", the noise floor) and flashsim on REF ("FlashSim", ``folds`` N ≥ 1); with
   ``mass_draws`` K, the K extra reference draws in fullsim mode on the same executor.
3. **Numbers** (:func:`compare_outputs`; "a" ∈ {FlashSim, reference′}, "ref" = reference; a REF
   whose reference run fills no histogram — no event passes the preselection — is refused
   instead of a report of NaNs):

   * cutflow efficiency of each cumulative step, ε = n_step / (N · n_all) (N = folds for
     FlashSim, 1 otherwise; unweighted counts), binomial error σ_ε = √(ε(1−ε)/n_all) over the
     n_all Gen events; ratios r = ε_a/ε_ref with σ_r = r·√((σ_a/ε_a)² + (σ_ref/ε_ref)²) (inputs
     taken as independent: conservative, they share the Gen events);
   * yields (Σ genWeight) per region with their statistical errors, and the same ratios;
   * per (region, variable) histogram χ²(a, ref) = Σ_i (a_i − ref_i)²/((w_a + w_ref) μ̂_i) with
     each bin's variance from the pooled estimate μ̂_i of its content (w = Σσ²/Σcontent per
     histogram; :func:`flashsim_coffea.stats.chi2_pooled`) — with unit weights exactly the demo's
     Σ (a − ref)²/(σ_a² + σ_ref²); unlike it, still ≈ ndf for FlashSim with N > 1 folds in sparse
     histograms (with observed variances an empty reference bin has σ = 0 and inflates χ²: the
     sideband's ~150 VBF events gave R 2.6–8 at 20 folds with every variable), for a = FlashSim
     and a = reference′, and
     the **ratio** R = χ²(FlashSim, ref) / χ²(ref′, ref): 1 means FlashSim is as close to the
     reference as a second draw of the reference itself (inf when the floor is 0 and FlashSim
     differs, NaN when neither has content); the same, ``ratio_shape``, with FlashSim and
     reference′ scaled to the reference's area (shape only). A histogram is *compared* when
     both χ² have ≥ 5 bins with content (:data:`MIN_NDF`; a ratio of two χ² with 1–4 degrees
     of freedom is noise); over the compared ones: median and worst R (and R shape), flags
     where R > 3 (the target) and R > 1.3 (the goal);
   * the RMS of m_μμ in the preselection for each (from the ``presel/mass`` histogram: bin
     centres, weights = contents), with σ_RMS ≈ RMS/√(2 n_eff), n_eff = (Σw)²/Σw², and the
     relative differences (a − ref)/ref. On one draw this statistic is noisy: its tails decide
     it, and on 50k VBF H→μμ events single reference draws of the same Gen events scatter by
     ~0.7 % (docs/closure.md). With ``mass_draws`` K > 0, K more reference draws (seeds
     ``ref_seed`` + 1 … + K, fullsim without the DNN, m_μμ only) make it precise: the
     reference's RMS is that of the K + 2 draws pooled (REF, REF2 and the K; histograms
     summed), FlashSim's that of its N folds pooled, σ_draw the standard deviation of the
     K + 2 single-draw RMS values, and

         Δ = RMS_FlashSim / RMS_ref,pooled − 1,   σ_Δ = (σ_draw / RMS_ref,pooled) · √(1/N + 1/(K + 2))

     (FlashSim's fold-to-fold spread taken equal to the reference's draw-to-draw spread; the
     Gen events are common, so their own fluctuation cancels).

4. **Report** (:func:`write_report`): ``summary.json`` (keys in :data:`SUMMARY_KEYS`),
   ``summary.md`` and figures in ``figures/`` (mplhep style, the project's label): per (region,
   variable) reference (points), FlashSim and reference′ with both ratios to the reference, and
   the cutflow efficiencies with their ratios. The report folder must be empty unless ``force``;
   it is locked while the closure runs (a second closure into it fails at once); REF2 and the
   extra draws go to a temporary folder ``DIR/.ref2-*`` removed at the end, on an error and on
   SIGTERM/SIGINT (one left by a killed run is removed by the next). With ``force`` nothing is
   deleted before the numbers are complete: the summary files are replaced (written under a
   temporary name, then renamed), and of the earlier report's figures (listed in its
   ``summary.json``) those not drawn again are removed — never other files in the folder.

One reference file (one dataset) per call; run it once per process for several.

>>> from flashsim_coffea.closure import ClosureConfig, run_closure
>>> summary = run_closure(ClosureConfig(ref="vbf.root", output="closure-vbf"))
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cards import json_safe
from .errors import MissingBranchesError, UserError
from .safe_write import TemporaryFolder, atomic_write, ensure_writable_dir, output_lock, remove_replaced
from .safe_write import check_output_dir as _check_output_dir
from .stats import as_arrays, chi2_pooled

__all__ = [
    "DEFAULT_REF_SEED",
    "GOAL",
    "MIN_EVENTS",
    "MIN_NDF",
    "SOURCES",
    "SUMMARY_KEYS",
    "TARGET",
    "ClosureConfig",
    "ClosureOutputs",
    "check_inputs",
    "check_output_dir",
    "flashsim_models",
    "compare_outputs",
    "cutflow_table",
    "chi2_table",
    "mass_draw_seeds",
    "mass_rms",
    "pooled_mass_rms",
    "run_closure",
    "run_mass_draws",
    "run_outputs",
    "write_report",
    "yields_table",
]

#: χ² ratio above which a histogram misses the target / the goal
TARGET = 3.0
GOAL = 1.3
#: fewest bins with content (in both χ²) for a histogram to be compared and flagged
MIN_NDF = 5
#: fewest events of REF a closure runs on (checked before any work); a REF whose reference run
#: fills no histogram at all is refused after the runs
MIN_EVENTS = 200
#: reference′ seed when none is given (must differ from the seed that drew REF)
DEFAULT_REF_SEED = 424242
#: the three histogram sets: key in the outputs → label in tables and figures
SOURCES = {"flashsim": "FlashSim", "reference": "reference", "reference2": "reference′"}
#: the same in figures (the plot fonts have no prime)
FIGURE_LABELS = {"flashsim": "FlashSim", "reference": "reference", "reference2": "reference, 2nd draw (floor)"}
#: top-level keys of summary.json
SUMMARY_KEYS = ("dataset", "inputs", "settings", "events", "cutflow", "yields", "chi2", "chi2_summary", "mass_rms",
                "thresholds", "figures", "timings_s")
MASS_REGION, MASS_VAR = "presel", "mass"
REGION_NOTES = {"presel": "preselection", "SR": "VBF signal region", "SB": "VBF sideband"}
FIGURES = "figures"
#: name prefix of the closure's temporary folder in DIR (REF2 and the extra draws; a killed run's
#: leftover is recognised by it: it does not make DIR "not empty" and the next closure removes it)
SCRATCH_PREFIX = ".ref2-"

# =========================================================================== configuration
@dataclass
class ClosureConfig:
    """What ``flashsim closure`` was asked to do (see the module docstring).

    ``ref2``: a second reference draw of REF's Gen events (None: drawn with ``ref_seed``);
    ``dataset``: the name in the outputs and the report (default: REF's file stem);
    ``jets_model``/``muons_model``/``pileup_jets_model``: FlashSim flows (None: the shipped ones;
    ``pileup_jets_model=False``: no FlashSim pile-up jets); ``dnn``: evaluate the
    DNN (its histogram ``dnn_atanh`` is then compared too); ``mass_draws``: K more reference
    draws for a precise m_μμ RMS comparison (module docstring, step 3).
    """

    ref: str | Path
    output: str | Path
    ref2: str | Path | None = None
    dataset: str | None = None
    folds: int = 1
    ref_seed: int = DEFAULT_REF_SEED
    executor: Any = "futures"
    workers: int = 2
    scheduler: str | None = None
    chunksize: int = 10_000
    force: bool = False
    progress: bool = True
    dnn: bool = True
    jets_model: str | Path | None = None
    muons_model: str | Path | None = None
    pileup_jets_model: str | Path | bool | None = None
    figures: bool = True
    mass_draws: int = 0

    @property
    def name(self) -> str:
        return self.dataset or Path(self.ref).stem


@dataclass
class ClosureOutputs:
    """The processor outputs (of the one dataset) of the three runs, how REF2 was obtained, and the
    m_μμ histograms of the extra reference draws (if any)."""

    reference: dict
    reference2: dict
    flashsim: dict
    folds: int = 1
    ref2_source: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    #: ``presel/mass`` histograms of the extra reference draws (``ClosureConfig.mass_draws``)
    mass_draws: list = field(default_factory=list)


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, flush=True)


# =========================================================================== inputs
def _processors(cfg: ClosureConfig):
    from .runner.build import make_processor

    full = make_processor("fullsim", dnn=cfg.dnn)
    # sampling threads: default_threads(executor), same histograms for every value
    flash = make_processor("flashsim", cfg.folds, dnn=cfg.dnn, executor=cfg.executor,
                           models={"jets": cfg.jets_model, "muons": cfg.muons_model, "pileup_jets": cfg.pileup_jets_model})
    return full, flash


def _event_ids(path: Path) -> tuple[list[str], int, dict[str, np.ndarray]]:
    from .nanoaod.conventions import EVENT_ID
    from .nanoaod.io import open_events

    tree = open_events(path)
    keys = list(tree.keys())
    ids = {k: tree[k].array(library="np") for k in EVENT_ID if k in keys}
    return keys, int(tree.num_entries), ids


def _reference_seed(path: Path) -> int | None:
    """The seed that drew the reference response of ``path`` (None when unknown)."""
    from .nanoaod.io import read_metadata

    try:
        meta = read_metadata(path)
    except Exception:  # noqa: BLE001 - files without readable metadata: unknown
        return None
    if "reference_seed" in meta:
        return int(meta["reference_seed"])
    if meta.get("reference_response") and "seed" in meta:
        return int(meta["seed"])
    return None


def flashsim_models(cfg: ClosureConfig) -> dict[str, dict[str, Any]]:
    """The FlashSim flows of the flashsim run: per simulated object its folder and the weights'
    SHA-256 from its card (which FlashSim the numbers belong to)."""
    _, flash = _processors(cfg)
    prov = flash.flashsim.provenance()
    return {name: {"path": path, "weights_sha256": prov[name]["weights_sha256"]}
            for name, path in flash.flashsim.model_paths.items()}


def check_output_dir(output: str | Path, force: bool) -> Path:
    """The report folder: a UserError if it is a file, or is not empty and ``force`` is not set
    (:func:`flashsim_coffea.safe_write.check_output_dir`; a leftover temporary folder
    ``SCRATCH_PREFIX*`` of a killed closure does not count)."""
    return _check_output_dir(output, force, ignore=(SCRATCH_PREFIX + "*",))


def check_inputs(cfg: ClosureConfig) -> dict[str, Any]:
    """Every check of step 1 (module docstring), before any work; returns REF's entries, the seed
    that drew it (or None) and REF2's path (None: to be drawn)."""
    from .nanoaod.io import check_counters, check_duplicates, check_reference, gen_collections, gen_hint
    from .noise import check_seed
    from .reference.resimulate import REQUIRED_GEN

    if isinstance(cfg.folds, bool) or not isinstance(cfg.folds, int) or cfg.folds < 1:
        raise UserError(f"--folds must be an integer ≥ 1, got {cfg.folds!r}")
    if isinstance(cfg.chunksize, bool) or not isinstance(cfg.chunksize, int) or cfg.chunksize < 1:
        raise UserError(f"--chunksize must be an integer ≥ 1, got {cfg.chunksize!r}")
    if isinstance(cfg.mass_draws, bool) or not isinstance(cfg.mass_draws, int) or cfg.mass_draws < 0:
        raise UserError(f"--mass-draws must be an integer ≥ 0 (extra reference draws), got {cfg.mass_draws!r}")
    ref = Path(cfg.ref)
    check_output_dir(cfg.output, cfg.force)
    keys, n, ids = _event_ids(ref)
    check_reference(ref, "of a closure", keys)
    full, flash = _processors(cfg)
    available = set(keys)
    gen_read = list(dict.fromkeys([*REQUIRED_GEN, *flash.required_branches()]))
    gen_missing = [b for b in gen_read if b not in available]
    if gen_missing:
        raise MissingBranchesError(str(ref), gen_missing, "run FlashSim and the reference response on its Gen events"
                                   + gen_hint(gen_missing, available))
    check_counters(ref, gen_collections(gen_read))
    check_duplicates(ref, cfg.folds, ids)
    reco_missing = full.missing_branches(available)
    if reco_missing:
        raise MissingBranchesError(str(ref), reco_missing, "run the analysis on its reference reco objects (fullsim mode)")
    if n == 0:
        raise UserError(f"{ref}: the Events tree is empty")
    if n < MIN_EVENTS:
        raise UserError(f"{ref}: {n} events; a closure needs at least {MIN_EVENTS} (with fewer, its histograms "
                        "are nearly empty and every χ² ratio is NaN); give a larger sample")
    seed = _reference_seed(ref)
    if cfg.ref2 is None:
        check_seed(cfg.ref_seed)
        if seed is not None and seed == cfg.ref_seed:
            raise UserError(f"{ref} was drawn with the reference seed {seed}: --ref-seed {cfg.ref_seed} would repeat "
                            "the same draw (no noise floor); choose another --ref-seed")
    else:
        ref2 = Path(cfg.ref2)
        if ref2.resolve() == ref.resolve():
            raise UserError(f"REF2 {ref2} is REF itself: give a second reference draw of the same Gen events "
                            "(flashsim resimulate REF -o REF2 --seed S) or leave REF2 out")
        keys2, n2, ids2 = _event_ids(ref2)
        check_reference(ref2, "of a closure (REF2)", keys2)
        reco2 = full.missing_branches(set(keys2))
        if reco2:
            raise MissingBranchesError(str(ref2), reco2, "run the analysis on its reference reco objects (fullsim mode)")
        same = n2 == n and set(ids2) == set(ids) and all(np.array_equal(ids[k], ids2[k]) for k in ids)
        if not same:
            raise UserError(f"REF2 {ref2} does not hold the same events as REF {ref} (run, luminosityBlock, event, in "
                            f"order; {n2} vs {n} events): it must be a second reference draw of REF's Gen events, e.g. "
                            "flashsim resimulate REF -o REF2 --seed S")
    if cfg.mass_draws:
        draw_seeds = mass_draw_seeds(cfg)
        for s in draw_seeds:
            check_seed(s)
        used = {seed, cfg.ref_seed if cfg.ref2 is None else _reference_seed(Path(cfg.ref2))} - {None}
        clash = sorted(used & set(draw_seeds))
        if clash:
            raise UserError(f"the extra reference draws (--mass-draws {cfg.mass_draws}: seeds {cfg.ref_seed + 1}–"
                            f"{cfg.ref_seed + cfg.mass_draws}) would repeat the draw of seed {clash[0]} (REF or REF2); "
                            "choose another --ref-seed")
    return {"events": n, "ref_seed_of_ref": seed, "ref2": None if cfg.ref2 is None else str(cfg.ref2)}


# =========================================================================== runs
def _fileset(cfg: ClosureConfig, path: str | Path) -> dict:
    """The one-file coffea fileset of the closure's dataset."""
    return {cfg.name: {"files": {str(Path(path).resolve()): "Events"}}}


def run_outputs(cfg: ClosureConfig, ref2: str | Path, scratch: str | Path | None = None) -> ClosureOutputs:
    """Step 2: fullsim on REF and REF2, flashsim on REF — and, with ``cfg.mass_draws``, the extra
    reference draws (:func:`run_mass_draws`, drawn into ``scratch``, default a temporary folder);
    one executor for all."""
    from .runner import executor_session, run_processor

    full, flash = _processors(cfg)
    timings: dict[str, float] = {}
    runs = (("reference", full, cfg.ref, "fullsim (reference) on REF"),
            ("reference2", full, ref2, "fullsim (reference', 2nd draw) on REF2"),
            ("flashsim", flash, cfg.ref, f"flashsim (folds {cfg.folds}) on REF"))
    out: dict[str, dict] = {}
    draws: list = []
    with executor_session(cfg.executor, cfg.workers, cfg.scheduler, status=cfg.progress) as ex:
        for k, (key, proc, path, what) in enumerate(runs, start=1):
            _log(cfg.progress, f"[{k + 1}/5] {what} …")
            t0 = time.perf_counter()
            res = run_processor(_fileset(cfg, path), proc, ex, chunksize=cfg.chunksize)
            timings[key] = round(time.perf_counter() - t0, 2)
            out[key] = res[cfg.name]
            ev = out[key]["nevents"]
            _log(cfg.progress, f"      done in {timings[key]:.1f} s ({ev / max(timings[key], 1e-9):.0f} events/s)")
        if cfg.mass_draws:
            t0 = time.perf_counter()
            if scratch is None:
                with tempfile.TemporaryDirectory(prefix=".mass-draws-") as tmp:
                    draws = run_mass_draws(cfg, Path(tmp), ex)
            else:
                draws = run_mass_draws(cfg, Path(scratch), ex)
            timings["mass_draws"] = round(time.perf_counter() - t0, 2)
    return ClosureOutputs(out["reference"], out["reference2"], out["flashsim"], cfg.folds, str(ref2), timings, draws)


def mass_draw_seeds(cfg: ClosureConfig) -> list[int]:
    """Seeds of the extra reference draws: ``ref_seed`` + 1 … + ``mass_draws``."""
    return [cfg.ref_seed + i for i in range(1, cfg.mass_draws + 1)]


def run_mass_draws(cfg: ClosureConfig, folder: Path, executor) -> list:
    """The ``presel/mass`` histograms of ``cfg.mass_draws`` more reference draws of REF's Gen
    events (:func:`mass_draw_seeds`), each drawn into ``folder``, run with ``executor`` in fullsim
    mode without the DNN, and removed."""
    from flashsim_coffea.processors import VBFHmmProcessor

    from .reference.resimulate import resimulate_file
    from .runner import run_processor

    out = []
    seeds = mass_draw_seeds(cfg)
    for i, seed in enumerate(seeds, start=1):
        _log(cfg.progress, f"      m_mumu RMS: reference draw {i}/{len(seeds)} (seed {seed}) …")
        path = folder / f"{Path(cfg.ref).stem}_ref{seed}.root"
        resimulate_file(cfg.ref, path, seed, progress=False)
        res = run_processor(_fileset(cfg, path), VBFHmmProcessor(mode="fullsim", dnn=False), executor,
                            chunksize=cfg.chunksize)
        out.append(res[cfg.name]["hists"][MASS_REGION][MASS_VAR])
        path.unlink()
    return out


# =========================================================================== numbers
def _ratio(a: float, sa: float, b: float, sb: float) -> tuple[float, float]:
    """r = a/b with σ_r = r·√((σa/a)² + (σb/b)²) (a, b independent); NaN when b ≤ 0."""
    if not b > 0:
        return float("nan"), float("nan")
    r = a / b
    if a > 0:
        return float(r), float(abs(r) * math.sqrt((sa / a) ** 2 + (sb / b) ** 2))
    return float(r), float(sa / b)


def _efficiency(count: float, n_all: int, folds: int) -> tuple[float, float]:
    if n_all <= 0:
        return float("nan"), float("nan")
    eff = count / (folds * n_all)
    return float(eff), float(math.sqrt(max(eff * (1 - eff), 0.0) / n_all))


def cutflow_table(outputs: ClosureOutputs) -> list[dict[str, Any]]:
    """Per cumulative step: counts, efficiencies ± binomial errors of the three sources, and the
    ratios FlashSim/reference and reference′/reference (module docstring)."""
    folds = {"flashsim": outputs.folds, "reference": 1, "reference2": 1}
    res = {k: getattr(outputs, k) for k in SOURCES}
    steps = list(outputs.reference["cutflow"])
    rows = []
    for step in steps:
        row: dict[str, Any] = {"step": step}
        for k, r in res.items():
            n_all = int(r["nevents"])
            eff, err = _efficiency(float(r["cutflow"][step]), n_all, folds[k])
            row[k] = {"count": float(r["cutflow"][step]) / folds[k], "eff": eff, "err": err}
        ref = row["reference"]
        for k, label in (("flashsim", "ratio_flashsim"), ("reference2", "ratio_floor")):
            v, e = _ratio(row[k]["eff"], row[k]["err"], ref["eff"], ref["err"])
            row[label] = {"value": v, "err": e}
        rows.append(row)
    return rows


def _sum_hist(h) -> tuple[float, float]:
    a = as_arrays(h)
    return float(a.values.sum()), float(a.variances.sum())


def yields_table(outputs: ClosureOutputs) -> list[dict[str, Any]]:
    """Per region: Σ weights (the ``mass`` histogram, flow bins excluded) ± √Σw² of the three
    sources, and the ratios to the reference."""
    rows = []
    for region, hists in outputs.reference["hists"].items():
        var = MASS_VAR if MASS_VAR in hists else next(iter(hists))
        row: dict[str, Any] = {"region": region}
        for k in SOURCES:
            s, v = _sum_hist(getattr(outputs, k)["hists"][region][var])
            row[k] = {"yield": s, "err": math.sqrt(v)}
        for k, label in (("flashsim", "ratio_flashsim"), ("reference2", "ratio_floor")):
            val, err = _ratio(row[k]["yield"], row[k]["err"], row["reference"]["yield"], row["reference"]["err"])
            row[label] = {"value": val, "err": err}
        rows.append(row)
    return rows


def _arrays(h) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, variances, edges); Poisson variances when the histogram stores none."""
    a = as_arrays(h)
    return a.values, a.variances, a.edges


def _chi2_ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return float("inf") if num > 0 else float("nan")


def _to_area(a: np.ndarray, va: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    """``a`` scaled to the area ``total`` (variances by the square); unchanged when empty."""
    s = a.sum()
    k = total / s if s > 0 else 1.0
    return a * k, va * k * k


def chi2_table(outputs: ClosureOutputs) -> list[dict[str, Any]]:
    """Per (region, variable): χ²(FlashSim, ref), χ²(ref′, ref) with their ndf, the ratio R, the
    same for the shapes (a scaled to the reference's area: ``ratio_shape``), and the flags.

    A histogram is ``compared`` when both χ² have ndf ≥ :data:`MIN_NDF` and R is defined; only
    compared histograms are flagged (R > :data:`TARGET`, R > :data:`GOAL`)."""
    rows = []
    for region, hists in outputs.reference["hists"].items():
        for var, h_ref in hists.items():
            r, vr, _ = _arrays(h_ref)
            f, vf, _ = _arrays(outputs.flashsim["hists"][region][var])
            r2, vr2, _ = _arrays(outputs.reference2["hists"][region][var])
            cf, c2 = chi2_pooled(f, vf, r, vr), chi2_pooled(r2, vr2, r, vr)
            sf, s2 = chi2_pooled(*_to_area(f, vf, r.sum()), r, vr), chi2_pooled(*_to_area(r2, vr2, r.sum()), r, vr)
            ratio = _chi2_ratio(float(cf.chi2), float(c2.chi2))
            compared = bool(min(cf.ndf, c2.ndf) >= MIN_NDF and not math.isnan(ratio))
            rows.append({
                "region": region, "variable": var,
                "chi2_flashsim": float(cf.chi2), "ndf_flashsim": int(cf.ndf),
                "chi2_floor": float(c2.chi2), "ndf_floor": int(c2.ndf),
                "ratio": ratio,
                "chi2_shape_flashsim": float(sf.chi2), "chi2_shape_floor": float(s2.chi2),
                "ratio_shape": _chi2_ratio(float(sf.chi2), float(s2.chi2)),
                "compared": compared,
                "above_target": bool(compared and ratio > TARGET), "above_goal": bool(compared and ratio > GOAL),
            })
    return rows


def chi2_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst χ² ratio (and shape-only ratio) over the compared histograms, the flagged
    ones, and those not compared (fewer than :data:`MIN_NDF` bins with content)."""
    ok = [r for r in rows if r["compared"]]
    name = lambda r: f"{r['region']}/{r['variable']}"  # noqa: E731

    def stats(key):
        vals = np.array([r[key] for r in ok if not math.isnan(r[key])], dtype=np.float64)
        worst = max((r for r in ok if not math.isnan(r[key])), key=lambda r: r[key], default=None)
        return (float(np.median(vals)) if vals.size else float("nan"),
                {"histogram": name(worst), "ratio": worst[key]} if worst else None)

    median, worst = stats("ratio")
    median_shape, worst_shape = stats("ratio_shape")
    return {
        "histograms": len(rows),
        "compared": len(ok),
        "median_ratio": median,
        "worst": worst,
        "median_ratio_shape": median_shape,
        "worst_shape": worst_shape,
        "above_target": [name(r) for r in ok if r["above_target"]],
        "above_goal": [name(r) for r in ok if r["above_goal"]],
        "not_compared": [name(r) for r in rows if not r["compared"]],
    }


def _hist_rms(h) -> tuple[float, float, float]:
    """(RMS, σ_RMS ≈ RMS/√(2 n_eff), mean) of a 1-D histogram from its bin centres; NaN when empty."""
    values, variances, edges = _arrays(h)
    total = values.sum()
    if total <= 0:
        return float("nan"), float("nan"), float("nan")
    x = 0.5 * (edges[1:] + edges[:-1])
    mean = float((values * x).sum() / total)
    rms = float(math.sqrt(max((values * (x - mean) ** 2).sum() / total, 0.0)))
    n_eff = total**2 / variances.sum() if variances.sum() > 0 else float("nan")
    return rms, (rms / math.sqrt(2 * n_eff) if n_eff > 0 else float("nan")), mean


def pooled_mass_rms(outputs: ClosureOutputs, region: str = MASS_REGION, var: str = MASS_VAR) -> dict[str, Any] | None:
    """FlashSim (its folds pooled) vs the reference pooled over REF, REF2 and the extra draws
    ``outputs.mass_draws``: Δ and σ_Δ of the module docstring (step 3); None without extra draws."""
    if not outputs.mass_draws:
        return None
    hists = [outputs.reference["hists"][region][var], outputs.reference2["hists"][region][var], *outputs.mass_draws]
    singles = np.array([_hist_rms(h)[0] for h in hists])
    pooled = _hist_rms(sum(hists[1:], hists[0]))[0]
    flash = _hist_rms(outputs.flashsim["hists"][region][var])[0]
    sigma = float(np.std(singles, ddof=1))
    k = len(hists)
    return {"draws": k, "folds": outputs.folds, "rms_draws": singles.tolist(), "sigma_draw": sigma,
            "reference_pooled": pooled, "flashsim_pooled": flash, "rel_diff": flash / pooled - 1,
            "err": sigma / pooled * math.sqrt(1 / outputs.folds + 1 / k)}


def mass_rms(outputs: ClosureOutputs, region: str = MASS_REGION, var: str = MASS_VAR) -> dict[str, Any]:
    """RMS of ``var`` in ``region`` from the histogram (bin centres) for the three sources, with
    σ_RMS ≈ RMS/√(2 n_eff), and the relative differences to the reference; ``pooled``: the
    comparison over many draws (:func:`pooled_mass_rms`, None without extra draws)."""
    out: dict[str, Any] = {"region": region, "variable": var}
    for k in SOURCES:
        rms, err, mean = _hist_rms(getattr(outputs, k)["hists"][region][var])
        out[k] = {"rms": rms, "err": err, "mean": mean}
    ref = out["reference"]["rms"]
    for k, label in (("flashsim", "rel_diff_flashsim"), ("reference2", "rel_diff_floor")):
        out[label] = (out[k]["rms"] - ref) / ref if ref > 0 else float("nan")
    out["pooled"] = pooled_mass_rms(outputs, region, var)
    return out


def compare_outputs(outputs: ClosureOutputs) -> dict[str, Any]:
    """Step 3 (module docstring): the cutflow, yields, χ² and m_μμ RMS numbers of a closure."""
    rows = chi2_table(outputs)
    return {
        "events": int(outputs.reference["nevents"]),
        "cutflow": cutflow_table(outputs),
        "yields": yields_table(outputs),
        "chi2": rows,
        "chi2_summary": chi2_summary(rows),
        "mass_rms": mass_rms(outputs),
        "thresholds": {"target": TARGET, "goal": GOAL, "min_ndf": MIN_NDF},
    }


# =========================================================================== report
def _fmt(x: Any, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return format(x, fmt)


def _pm(d: Mapping, key: str = "value", fmt: str = ".3f") -> str:
    return f"{_fmt(d[key], fmt)} ± {_fmt(d['err'], fmt)}"


def _flag(row: Mapping[str, Any]) -> str:
    if not row["compared"]:
        return "not compared"
    return "> target" if row["above_target"] else ("> goal" if row["above_goal"] else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def markdown(summary: Mapping[str, Any]) -> str:
    """``summary.md``: inputs, cutflow, yields, χ² summary and table, m_μμ RMS, figures."""
    s = summary
    inp, st = s["inputs"], s["settings"]
    L = [f"# Closure: FlashSim vs reference on the same Gen events — {s['dataset']}", ""]
    L += [f"REF `{inp['ref']}` ({s['events']} events); reference′ (the noise floor): {inp['ref2_source']}. "
          f"FlashSim folds {st['folds']}; executor {st['executor']}, chunksize {st['chunksize']}. "
          "A ratio FlashSim/ref is to be read against the floor ref′/ref: both reconstruct the same Gen events.", ""]
    models = st.get("flashsim_models") or {}
    if models:
        names = [f"{k} `{Path(v['path']).name}` (weights SHA-256 {(v['weights_sha256'] or '?')[:12]})"
                 for k, v in models.items()]
        L += ["FlashSim models: " + ", ".join(names) + ".", ""]
    L += ["## Cutflow efficiencies", "", "ε = events after each cumulative step / all (unweighted; FlashSim fold "
          "entries / N), ± binomial error; ratio errors treat the two as independent.", ""]
    L += _table(["step", "ε FlashSim", "ε reference", "ε reference′", "FlashSim/ref", "ref′/ref (floor)"],
                [[r["step"], _pm(r["flashsim"], "eff", ".4f"), _pm(r["reference"], "eff", ".4f"),
                  _pm(r["reference2"], "eff", ".4f"), _pm(r["ratio_flashsim"]), _pm(r["ratio_floor"])] for r in s["cutflow"]])
    L += ["## Yields per region", "", "Σ genWeight ± √Σw² (folds-weighted for FlashSim).", ""]
    L += _table(["region", "FlashSim", "reference", "reference′", "FlashSim/ref", "ref′/ref (floor)"],
                [[r["region"], _pm(r["flashsim"], "yield", ".1f"), _pm(r["reference"], "yield", ".1f"),
                  _pm(r["reference2"], "yield", ".1f"), _pm(r["ratio_flashsim"]), _pm(r["ratio_floor"])] for r in s["yields"]])
    cs, th = s["chi2_summary"], s["thresholds"]
    worst = cs["worst"] or {"histogram": "–", "ratio": float("nan")}
    L += ["## χ² ratio per histogram", "", "χ²(a, ref) = Σ (a−ref)²/((w_a+w_ref)·μ̂) over the bins with content, μ̂ the "
          "pooled estimate of the bin's content, w = Σσ²/Σcontent per histogram (with unit weights: Σ (a−ref)²/(σa²+σref²), "
          "the demo's definition); ratio R = χ²(FlashSim, ref)/χ²(ref′, ref).", ""]
    worst_shape = cs["worst_shape"] or {"histogram": "–", "ratio": float("nan")}
    L += _table(["histograms compared", "median R", "worst R", f"R > {th['target']:g} (target)", f"R > {th['goal']:g} (goal)",
                 "median R shape", "worst R shape"],
                [[f"{cs['compared']} / {cs['histograms']}", _fmt(cs["median_ratio"], ".2f"),
                  f"{_fmt(worst['ratio'], '.2f')} ({worst['histogram']})", str(len(cs["above_target"])),
                  str(len(cs["above_goal"])), _fmt(cs["median_ratio_shape"], ".2f"),
                  f"{_fmt(worst_shape['ratio'], '.2f')} ({worst_shape['histogram']})"]])
    L += [f"Compared: both χ² with ≥ {th['min_ndf']} bins with content. \"R shape\": the same with FlashSim and "
          "reference′ scaled to the reference's area (shape only, normalisation removed).", ""]
    if cs["above_target"]:
        L += [f"Above the target ({th['target']:g}): " + ", ".join(f"`{h}`" for h in cs["above_target"]), ""]
    if cs["not_compared"]:
        L += ["Not compared (too few bins with content): " + ", ".join(f"`{h}`" for h in cs["not_compared"]), ""]
    L += _table(["region", "variable", "χ² FlashSim (ndf)", "χ² ref′ (ndf)", "R", "R shape", "flag"],
                [[r["region"], r["variable"], f"{_fmt(r['chi2_flashsim'], '.1f')} ({r['ndf_flashsim']})",
                  f"{_fmt(r['chi2_floor'], '.1f')} ({r['ndf_floor']})", _fmt(r["ratio"], ".2f"), _fmt(r["ratio_shape"], ".2f"),
                  _flag(r)] for r in s["chi2"]])
    m = s["mass_rms"]
    L += [f"## m_μμ RMS ({m['region']})", ""]
    L += _table(["", "FlashSim", "reference", "reference′"],
                [["RMS [GeV]"] + [f"{_fmt(m[k]['rms'], '.3f')} ± {_fmt(m[k]['err'], '.3f')}" for k in SOURCES],
                 ["(a − ref)/ref", _fmt(m["rel_diff_flashsim"], "+.4f"), "0", _fmt(m["rel_diff_floor"], "+.4f")]])
    p = m.get("pooled")
    if p:
        L += [f"Over many draws (a single draw's RMS scatters by σ_draw = {_fmt(p['sigma_draw'], '.3f')} GeV, "
              f"{_fmt(p['sigma_draw'] / p['reference_pooled'], '.2%')}): FlashSim's {p['folds']} folds pooled "
              f"{_fmt(p['flashsim_pooled'], '.4f')} GeV vs {p['draws']} reference draws pooled "
              f"{_fmt(p['reference_pooled'], '.4f')} GeV: **Δ = {_fmt(p['rel_diff'], '+.2%')} ± {_fmt(p['err'], '.2%')}** "
              "(σ_Δ = σ_draw/RMS · √(1/N + 1/draws)). Single draws: "
              + ", ".join(_fmt(v, ".3f") for v in p["rms_draws"]) + " GeV.", ""]
    if s["figures"]:
        L += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in s["figures"]] + [""]
    return "\n".join(L)


def _title(dataset: str) -> str:
    return {"vbf_hmm": "VBF H→μμ", "dy": "DY μμ + jets", "ewk_mumujj": "EWK μμjj", "ttbar": "tt̄"}.get(dataset, dataset)


def comparison_figure(outputs: ClosureOutputs, region: str, var: str, path: Path, title: str) -> Path:
    """Reference (points), FlashSim and reference′ of one histogram with both ratios to the reference
    (log y when the reference's filled bins span more than a factor 100)."""
    from . import plotting as pl
    from .analysis import VARIABLES

    items = [
        pl.series(outputs.reference["hists"][region][var], "reference", histtype="errorbar", color="black"),
        pl.series(outputs.flashsim["hists"][region][var], "FlashSim", color="tab:red"),
        pl.series(outputs.reference2["hists"][region][var], FIGURE_LABELS["reference2"], color="tab:blue", linestyle="--"),
    ]
    xlabel = VARIABLES[var][0] if var in VARIABLES else var
    pos = items[0].values[items[0].values > 0]
    log = bool(pos.size and pos.max() > 100 * pos.min())  # steeply falling (isolation, pT): log y
    fig = pl.compare(items, ratios=[(1, 0), (2, 0)], xlabel=xlabel, ylabel="Events", ratio_label="ratio to reference",
                     title=title, note=REGION_NOTES.get(region, region), log=log)
    return pl.save(fig, path)


def cutflow_figure(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Cutflow efficiencies (log) of the three sources and the ratios FlashSim/ref, ref′/ref."""
    import matplotlib.pyplot as plt

    from . import plotting as pl

    pl.use_style()
    steps = [r["step"] for r in rows]
    x = np.arange(len(steps))
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": (3, 2), "hspace": 0.06})
    styles = {"flashsim": ("tab:red", "s", -0.12), "reference": ("black", "o", 0.0), "reference2": ("tab:blue", "^", 0.12)}
    for k, label in FIGURE_LABELS.items():
        color, marker, dx = styles[k]
        ax.errorbar(x + dx, [r[k]["eff"] for r in rows], yerr=[r[k]["err"] for r in rows], fmt=marker, color=color,
                    label=label, ms=5)
    ax.set_yscale("log")
    ax.set_ylabel("efficiency")
    ax.legend(fontsize=12)
    pl.project_label(ax, title)
    for key, label, (color, marker, dx) in (("ratio_flashsim", "FlashSim / reference", styles["flashsim"]),
                                            ("ratio_floor", "2nd draw / reference (floor)", styles["reference2"])):
        rax.errorbar(x + dx, [r[key]["value"] for r in rows], yerr=[r[key]["err"] for r in rows], fmt=marker,
                     color=color, label=label, ms=5)
    rax.axhline(1.0, color="gray", lw=1)
    lows = np.array([r[k]["value"] - r[k]["err"] for r in rows for k in ("ratio_flashsim", "ratio_floor")], dtype=float)
    highs = np.array([r[k]["value"] + r[k]["err"] for r in rows for k in ("ratio_flashsim", "ratio_floor")], dtype=float)
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    lo = min(0.8, 0.98 * lows.min()) if lows.size else 0.8
    hi = max(1.2, 1.02 * highs.max()) if highs.size else 1.2
    rax.set_ylim(max(lo, 0.0), min(hi, 3.0))
    rax.set_ylabel("ratio", fontsize=14)
    rax.legend(fontsize=11)
    rax.set_xticks(x, steps, rotation=30, ha="right", fontsize=12)
    return pl.save(fig, path)


def write_report(summary: dict[str, Any], outputs: ClosureOutputs | None, folder: Path, progress: bool = False,
                 hists: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Figures (when ``outputs`` is given: the cutflow and every (region, variable) of ``hists``,
    default all), ``summary.json`` and ``summary.md`` in ``folder``; returns ``summary`` with its
    ``figures`` (paths relative to ``folder``)."""
    folder = Path(folder)
    figures: list[str] = []
    if outputs is not None:
        figdir = folder / FIGURES
        figdir.mkdir(parents=True, exist_ok=True)
        title = _title(summary["dataset"])
        figures.append(str(cutflow_figure(summary["cutflow"], figdir / "cutflow.png", title).relative_to(folder)))
        if hists is None:
            hists = [(r["region"], r["variable"]) for r in summary["chi2"]]
        for i, (region, var) in enumerate(hists, start=1):
            path = comparison_figure(outputs, region, var, figdir / f"{region}_{var}.png", title)
            figures.append(str(path.relative_to(folder)))
            if progress and (i % 20 == 0 or i == len(hists)):
                _log(True, f"      {i}/{len(hists)} histogram figures")
    summary["figures"] = figures
    remove_replaced(folder, figures)  # the figures of the report this one replaces (--force), listed in its summary.json
    _write_summary(summary, folder)
    with atomic_write(folder / "summary.md") as tmp:
        Path(tmp).write_text(markdown(summary))
    return summary


def _write_summary(summary: dict[str, Any], folder: Path) -> None:
    with atomic_write(folder / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(summary), indent=1, ensure_ascii=False) + "\n")


def _has_entries(output: Mapping) -> bool:
    """Whether any histogram of a run's output has content."""
    return any(float(np.sum(h.values(flow=True))) != 0 for hists in output.get("hists", {}).values()
               for h in hists.values())


def _prepare_output(cfg: ClosureConfig) -> Path:
    """The report folder, created and tried for writing. Nothing in it is removed here: with
    ``force``, the report's files are replaced when the new ones are written, and the figures of
    the earlier report that the new one does not write are removed then (:func:`write_report`)."""
    return ensure_writable_dir(check_output_dir(cfg.output, cfg.force))


def _remove_leftovers(out: Path, progress: bool) -> None:
    """Remove the temporary folders ``SCRATCH_PREFIX*`` a killed closure left in ``out`` (called with
    the report folder's lock held: no running closure owns one)."""
    for p in sorted(out.glob(SCRATCH_PREFIX + "*")):
        if p.is_dir() and not p.is_symlink():
            _log(progress, f"removing {p}, left by an interrupted closure")
            shutil.rmtree(p, ignore_errors=True)


# =========================================================================== all of it
def run_closure(cfg: ClosureConfig) -> dict[str, Any]:
    """Steps 1–4 of the module docstring; returns the summary (also written to ``cfg.output``). The
    report folder is locked while the closure writes it (:func:`flashsim_coffea.safe_write.output_lock`)."""
    t_start = time.perf_counter()
    info = check_inputs(cfg)
    out = _prepare_output(cfg)
    with output_lock(out, what="report folder"):
        _remove_leftovers(out, cfg.progress)
        return _run_locked(cfg, info, out, t_start)


def _run_locked(cfg: ClosureConfig, info: dict[str, Any], out: Path, t_start: float) -> dict[str, Any]:
    """Steps 2–4 (and REF2's draw) into the checked, locked report folder ``out``."""
    timings: dict[str, float] = {}
    # removed at the end, on an error and on SIGTERM/SIGINT
    scratch = TemporaryFolder(out, prefix=SCRATCH_PREFIX) if cfg.ref2 is None or cfg.mass_draws else None
    tmp = None if scratch is None else scratch.path
    try:
        if cfg.ref2 is None:
            from .reference.resimulate import resimulate_file

            ref2 = Path(tmp) / f"{Path(cfg.ref).stem}_ref{cfg.ref_seed}.root"
            _log(cfg.progress, f"[1/5] reference' (2nd draw): resimulating {info['events']} events of {cfg.ref} "
                               f"with seed {cfg.ref_seed} …")
            t0 = time.perf_counter()
            resimulate_file(cfg.ref, ref2, cfg.ref_seed, progress=cfg.progress)
            timings["resimulate"] = round(time.perf_counter() - t0, 2)
            _log(cfg.progress, f"      done in {timings['resimulate']:.1f} s")
            ref2_source = f"drawn with `resimulate_file(REF, tmp, seed={cfg.ref_seed})`"
        else:
            ref2 = Path(cfg.ref2)
            _log(cfg.progress, f"[1/5] reference' (2nd draw): {ref2} (given)")
            ref2_source = f"`{ref2}` (given)"
        outputs = run_outputs(cfg, ref2, tmp)
        timings.update(outputs.timings_s)
    finally:
        if scratch is not None:
            scratch.remove()
    if not _has_entries(outputs.reference):
        raise UserError(f"{cfg.ref}: no histogram of the reference run has entries ({info['events']} events, none "
                        "passes the dimuon preselection): every number of the closure would be NaN; give a sample "
                        "with events passing the VBF H→μμ preselection")
    numbers = compare_outputs(outputs)
    if all(r["chi2_floor"] == 0 for r in numbers["chi2"]) and outputs.reference["cutflow"] == outputs.reference2["cutflow"]:
        raise UserError("REF2 gives exactly the histograms of REF: it is not a second reference draw (same seed?); "
                        "draw one with another seed (flashsim resimulate REF -o REF2 --seed S)")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                if k in ("folds", "ref_seed", "workers", "chunksize", "dnn", "jets_model", "muons_model", "pileup_jets_model",
                         "mass_draws")}
    settings["executor"] = cfg.executor if isinstance(cfg.executor, str) else type(cfg.executor).__name__
    settings["flashsim_models"] = flashsim_models(cfg)
    summary: dict[str, Any] = {
        "dataset": cfg.name,
        "inputs": {"ref": str(cfg.ref), "ref2": None if cfg.ref2 is None else str(cfg.ref2),
                   "ref2_seed": cfg.ref_seed if cfg.ref2 is None else None, "ref2_source": ref2_source,
                   "ref_seed_of_ref": info["ref_seed_of_ref"]},
        "settings": settings,
        **numbers,
        "figures": [],
        "timings_s": timings,
    }
    if cfg.figures:
        _log(cfg.progress, f"[5/5] figures and report in {out} …")
    summary = write_report(summary, outputs if cfg.figures else None, out, progress=cfg.progress)
    summary["timings_s"]["total"] = round(time.perf_counter() - t_start, 2)
    _write_summary(summary, out)
    return summary
