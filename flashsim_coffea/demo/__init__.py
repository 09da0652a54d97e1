"""``flashsim demo``: FullSim vs FlashSim vs Gen on the VBF H→μμ analysis, upsampling, a FlashSim-driven variation.

:func:`run_demo` does, in order (each step in its own module):

1. checks before any work (:mod:`.inputs`): the report folder is writable and empty (or
   ``force``), the samples and the FlashSim/DNN models exist (bundled package data by default);
2. runs :class:`flashsim_coffea.processors.VBFHmmProcessor` with the coffea Runner (:mod:`.runs`): fullsim,
   gen and flashsim over all processes, flashsim with folds N on the two VBF samples, and one
   Gen event with 10 000 folds;
3. computes the numbers (:mod:`.results`, formulas in :mod:`.stats`): yields, cutflows,
   χ²/ndf FlashSim vs FullSim, the upsampling error reduction, the FlashSim-driven variation
   (alternative generator) against FullSim, and the expected
   events per process normalised to σ·L (σ and Σw from the files, L = ``cfg.lumi_fb``);
4. draws the figures (:mod:`.figures`, with :mod:`flashsim_coffea.plotting`);
5. writes ``summary.json`` and ``summary.md`` (:mod:`.report`).

>>> from flashsim_coffea.demo import DemoConfig, run_demo
>>> summary = run_demo(DemoConfig(output="flashsim-demo"))
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

from .config import SIGNAL, VARIATION_HISTS, DemoConfig
from .inputs import check_models, check_output_free, make_simulator, prepare_output, remove_replaced_figures, resolve_samples

__all__ = ["DemoConfig", "run_demo"]


def _check_settings(cfg: DemoConfig) -> None:
    from ..runner import EXECUTORS
    from ..errors import UserError

    if cfg.executor not in EXECUTORS:
        raise UserError(f"unknown executor {cfg.executor!r}; choose one of {', '.join(EXECUTORS)}")
    lumi = cfg.lumi_fb
    if isinstance(lumi, bool) or not isinstance(lumi, (int, float)) or not 0 < lumi < float("inf"):
        raise UserError(f"lumi-fb must be a positive number (fb^-1), got {lumi!r}")
    for name in ("folds", "single_event_folds", "workers", "chunksize"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name.replace('_', '-')} must be an integer ≥ 1, got {value!r}")
    if cfg.folds < 2:
        raise UserError("--folds must be ≥ 2 for the upsampling comparison")


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict:
    """Run the whole demo (module docstring); returns the summary written to ``summary.json``."""
    with warnings.catch_warnings():
        # files made by `flashsim generate` carry no Photon/Tau/…: coffea's cross-reference warnings are noise here
        warnings.filterwarnings("ignore", message="Missing cross-reference")
        return _run_demo(cfg, log)


def _run_demo(cfg: DemoConfig, log: Callable[[str], None]) -> dict:
    from ..errors import UserError
    from . import figures, report, results
    from .runs import _entries, run_all

    t0 = time.perf_counter()
    _check_settings(cfg)
    check_output_free(cfg)
    models = check_models(cfg)
    # bundled/given samples are checked before the output folder is touched; generated ones go into it
    samples = None if cfg.events is not None else resolve_samples(cfg, log=log)
    out_dir = prepare_output(cfg)
    if samples is None:
        samples = resolve_samples(cfg, log=log)
    simulator = make_simulator(models)
    try:
        norm, norm_error = results.normalise(samples, cfg.lumi_fb), None
    except UserError as err:  # e.g. given files without Runs/XSecPb: the report goes on without the stack
        norm, norm_error = {}, str(err)
        log(f"no σ·L normalisation, so no stacked figures: {err}")

    outputs = run_all(cfg, samples, simulator, log=log)

    chi2 = results.flash_vs_full(outputs)
    up = results.upsampling(outputs, SIGNAL, cfg.folds) if SIGNAL in outputs.flashsim_folds else {}
    variations = results.variation(outputs)
    yields = results.yields(outputs)
    ratios = results.yield_ratios(outputs)
    se = outputs.single
    headline = f"{VARIATION_HISTS[0][0]}/{VARIATION_HISTS[0][1]}"
    expected = results.expected_events(outputs, norm) if norm else {"lumi_fb": cfg.lumi_fb, "error": norm_error}
    summary: dict = {
        "expected_events": expected,
        "chi2_ndf": {k: c.per_ndf for k, c in chi2.items()},
        "chi2_detail": {k: {"chi2": c.chi2, "ndf": c.ndf} for k, c in chi2.items()},
        "upsampling": {**up, "process": SIGNAL, "folds": cfg.folds, "region": "SR",
                       "definition": report.ERROR_DEFINITION},
        "variation_chi2_ndf": variations[headline].chi2.per_ndf if headline in variations else float("nan"),
        "variation": {k: {"chi2": c.chi2.chi2, "ndf": c.chi2.ndf, "chi2_ndf": c.chi2.per_ndf} for k, c in variations.items()},
        "chi2_definition": report.CHI2_DEFINITION,
        "yields": yields,
        "yield_errors": results.yields(outputs, errors=True),
        "flash_full_yield_ratio": {k: r for k, (r, _) in ratios.items()},
        "flash_full_yield_ratio_err": {k: e for k, (_, e) in ratios.items()},
        "cutflow": results.cutflows(outputs),
        # FlashSim's counts summed over each run (dropped, clamped, … objects): reported here, never warned per chunk
        "flashsim_counts": {p: out.get("flashsim", {}) for p, out in outputs.flashsim.items()},
        "single_event": None if se is None else {
            "process": se.process, "entry": se.entry, "event_id": se.event_id, "folds": se.folds,
            "fraction_selected": se.fraction_selected, "fraction_sr": se.fraction_sr,
            "fullsim_dnn": se.fullsim_dnn, "gen_dnn": se.gen_dnn},
        "samples": {p: {"file": str(path), "events": _entries(path)} for p, path in samples.items()},
        "models": {k: str(v) for k, v in models.items()},
        "settings": {"folds": cfg.folds, "single_event_folds": cfg.single_event_folds, "executor": cfg.executor,
                     "workers": cfg.workers, "chunksize": cfg.chunksize, "events": cfg.events, "lumi_fb": cfg.lumi_fb,
                     "dnn": cfg.dnn if isinstance(cfg.dnn, bool) else str(cfg.dnn)},
        "timings_s": outputs.timings,
    }
    if cfg.progress:
        log("drawing figures and writing the report …")
    figs = figures.all_figures(outputs, summary, variations, cfg.folds, out_dir / "figures")
    summary["figures"] = sorted(str(Path(f).relative_to(out_dir)) for fs in figs.values() for f in fs)
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    remove_replaced_figures(out_dir, summary["figures"])  # --force: the earlier report's figures not drawn again
    report.write_json(summary, out_dir / "summary.json")
    report.write_markdown(summary, figs, cfg, out_dir / "summary.md")
    return summary
