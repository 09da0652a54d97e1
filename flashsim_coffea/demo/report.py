"""``summary.json`` and ``summary.md`` of the demo (numbers from :mod:`.results`).

summary.json (at least)::

    {"expected_events": {"lumi_fb", "stack": {region: [process]}, "regions": {region: {
         "processes": {p: {"FullSim", "FullSim_err", "FlashSim", "FlashSim_err", "ratio", "xsec_pb",
                           "norm_weight", "sumw_runs", "in_stack"}}, "total": {...}}}},  σ·L-normalised
     "chi2_ndf": {"<process>/<region>/<var>": χ²/ndf, ...},          FlashSim vs FullSim
     "upsampling": {"dnn_error_folds1", "dnn_error_folds25", "zstar_error_folds1",
                    "zstar_error_folds25", ...},                        mean rel. error [%]
     "variation_chi2_ndf": χ²/ndf of the FlashSim-driven variation vs FullSim on DNN18Atan (SR),
     "variation": {"<region>/<var>": {"chi2", "ndf", "chi2_ndf"}},
     "yields": {process: {mode: {region: Σ genWeight}}}, "flash_full_yield_ratio": {...},
     "cutflow": {mode: {process: {step: events}}}, "single_event": {...},
     "settings": {...}, "samples": {...}, "timings_s": {...}, "wall_time_s": ..., "figures": [...]}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..analysis import CUTFLOW_STEPS, REGIONS
from ..cards import json_safe
from ..inject import describe_counts
from ..safe_write import atomic_write
from .config import COMPARISONS, SIGNAL, VARIATION, VARIATION_HISTS, DemoConfig
from ..stats import __doc__ as STATS_DOC

__all__ = ["write_json", "write_markdown"]

CHI2_DEFINITION = ("χ²/ndf = Σ_i (a_i − b_i)² / (σ_a,i² + σ_b,i²) / ndf over the bins with σ_a,i² + σ_b,i² > 0 "
                   "(ndf = their number, flow bins excluded); a, b taken as independent")
RATIO_DEFINITION = ("ratio errors: the two yields' statistical errors in quadrature (FlashSim and FullSim share "
                    "their Gen events, so the error of the ratio is overestimated).")
ERROR_DEFINITION = "mean over the bins filled in both histograms of σ_i / content_i, in %"
PLAIN_LABELS = {"vbf_hmm": "VBF H→μμ", "vbf_hmm_alt": "VBF H→μμ (alt. generator)", "ewk_mumujj": "EWK μμjj",
                "dy": "DY μμ + jets (VBF filter)", "dy_incl": "DY μμ + jets", "ttbar": "tt̄ (inclusive)",
                "ttbar_mumu": "tt̄ → μν μν", "ttbar_mumu_vbf": "tt̄ → μν μν (VBF filter)"}
VAR_TEXT = {"dnn_atanh": "DNN18Atan", "rpt": "R(pT)", "log_zstar": "ln z*", "mass": "m_μμ", "mu1_iso": "μ1 pfRelIso04_all",
            "j2_pt": "pT(j2)"}


def write_json(summary: dict, path: Path) -> Path:
    with atomic_write(path) as tmp:  # a temporary file beside it, renamed when complete
        Path(tmp).write_text(json.dumps(json_safe(summary), indent=1) + "\n")
    return path


# --------------------------------------------------------------------------- markdown
def _f(x: Any, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _pm(x: Any, err: Any) -> str:
    """``x ± err`` of a ratio (3 decimals), "–" when undefined."""
    return "–" if _f(x) == "–" else f"{_f(x, '.3f')} ± {_f(err, '.3f')}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _img(path: str | Path, base: Path) -> str:
    """Markdown image of ``path`` relative to the report's folder ``base``."""
    rel = Path(os.path.relpath(Path(path).resolve(), Path(base).resolve()))
    return f"![{rel.stem}]({rel.as_posix()})"


def _expected_section(s: dict, figures: dict[str, list[Path]], base: Path, region: str = "SR") -> list[str]:
    """The report's first section: the σ·L-normalised stacks and the expected events per process."""
    exp = s.get("expected_events") or {}
    lumi = exp.get("lumi_fb")
    L = [f"## Expected events, L = {_f(lumi, 'g')} fb⁻¹: FlashSim vs FullSim", ""]
    if not exp.get("regions"):
        return L + [f"No σ·L normalisation: {exp.get('error', 'no cross sections')}.", ""]
    stack = exp["stack"].get(region, [])
    L += [f"Every process normalised to σ·L: weight = genWeight · σ · L / Σ genEventSumw (σ = the file's "
          f"`Runs/XSecPb`, Pythia's LO σ × filter efficiency). Stack: FullSim of "
          f"{', '.join(PLAIN_LABELS.get(p, p) for p in stack)}; points: FlashSim (folds 1) of the same processes; "
          "ratio panel: FlashSim / FullSim total, band = the combined statistical error √(σ_Full² + σ_Flash²) / "
          "FullSim. The alternative-generator signal and the inclusive tt̄ (or, per region, the other DY and dimuon tt̄ samples) "
          "are not stacked: they would count a process twice.", ""]
    L += [" ".join(_img(f, base) for f in figures.get("stack", [])), ""]
    reg = exp["regions"][region]
    rows = []
    for p, y in reg["processes"].items():
        rows.append([PLAIN_LABELS.get(p, p), "yes" if y["in_stack"] else "no", _f(y["xsec_pb"], ".4g"),
                     f"{_f(y['FullSim'], '.4g')} ± {_f(y['FullSim_err'], '.2g')}",
                     f"{_f(y['FlashSim'], '.4g')} ± {_f(y['FlashSim_err'], '.2g')}", _pm(y["ratio"], y["ratio_err"])])
    t = reg["total"]
    rows.append(["**total (stacked)**", "", "", f"{_f(t['FullSim'], '.4g')} ± {_f(t['FullSim_err'], '.2g')}",
                 f"{_f(t['FlashSim'], '.4g')} ± {_f(t['FlashSim_err'], '.2g')}", _pm(t["ratio"], t["ratio_err"])])
    L += [f"Expected events in the {region} (L = {_f(lumi, 'g')} fb⁻¹), ± statistical error of the simulated "
          f"sample; {RATIO_DEFINITION}", ""]
    L += _table(["process", "in stack", "σ [pb]", "FullSim", "FlashSim", "FlashSim / FullSim"], rows)
    return L


def write_markdown(summary: dict, figures: dict[str, list[Path]], cfg: DemoConfig, path: Path) -> Path:
    """The human-readable report: settings, yields, cutflows, χ²/ndf, upsampling, FlashSim-driven variation, figures."""
    base = path.parent
    s = summary
    folds = s["settings"]["folds"]
    processes = list(s["yields"])
    L: list[str] = ["# FlashSim vs FullSim vs Gen: the VBF H→μμ analysis", ""]
    L += [f"Made by `flashsim demo` in {s['wall_time_s']:.0f} s ({s['settings']['executor']}, "
          f"{s['settings']['workers']} worker(s)). FullSim is this project's reference detector response "
          "(docs/reference.md), FlashSim the flows injected on the fly in the coffea processor, Gen the Gen-level "
          "objects. Weights: genWeight; yields are Σ genWeight of the selected events.", ""]
    L += [f"FlashSim models: jets `{s['models']['jets']}`, muons `{s['models']['muons']}`, pile-up jets (no GenJet): "
          "the shipped `pileup_jets`.", ""]
    L += _expected_section(s, figures, base)
    L += ["## Samples", ""]
    L += _table(["process", "file", "events"],
                [[PLAIN_LABELS.get(p, p), f"`{s['samples'][p]['file']}`", str(s["samples"][p]["events"])] for p in processes])

    # -- headline
    up = s.get("upsampling") or {}
    L += ["## Headline numbers", ""]
    rows = []
    if up:
        rows.append([f"mean stat. error DNN18Atan (SR, {PLAIN_LABELS[SIGNAL]}), folds 1 → {folds}",
                     f"{_f(up.get('dnn_error_folds1'), '.1f')} % → {_f(up.get(f'dnn_error_folds{folds}'), '.1f')} %",
                     "32.3 → 14.2"])
        rows.append([f"mean stat. error ln z* (SR), folds 1 → {folds}",
                     f"{_f(up.get('zstar_error_folds1'), '.1f')} % → {_f(up.get(f'zstar_error_folds{folds}'), '.1f')} %",
                     "14.4 → 11.2"])
    rows.append(["FlashSim-driven variation vs FullSim, χ²/ndf, DNN18Atan (SR)", _f(s.get("variation_chi2_ndf"), ".2f"), "–"])
    se = s.get("single_event")
    if se:
        rows.append([f"one Gen event, {se['folds']} folds: fraction passing VBF selection / in SR",
                     f"{_f(se['fraction_selected'], '.3f')} / {_f(se['fraction_sr'], '.3f')}", "–"])
    key = f"{SIGNAL}/SR"
    rows.append([f"FlashSim / FullSim yield, {PLAIN_LABELS[SIGNAL]} SR",
                 _pm(s["flash_full_yield_ratio"].get(key), s["flash_full_yield_ratio_err"].get(key)), "–"])
    L += _table(["quantity", "this run", "reference study"], rows)
    L += ["Reference-study numbers are quoted from the reference FlashSim study (docs/analysis.md; its samples, "
          "binning and error definition differ): compare the reduction factors, not the values.", ""]

    # -- yields and cutflows
    L += ["## Yields per mode", "", "Σ genWeight in the preselection (presel), VBF signal region (SR) and sideband (SB), "
          f"± statistical error; ratio = FlashSim / FullSim, {RATIO_DEFINITION}", ""]
    rows = []
    for p in processes:
        y, e = s["yields"][p], s["yield_errors"][p]
        for r in REGIONS:
            rows.append([PLAIN_LABELS.get(p, p), r]
                        + [f"{_f(y[m][r], '.4g')} ± {_f(e[m][r], '.2g')}" if m in y else "–" for m in ("FullSim", "FlashSim", "Gen")]
                        + [_pm(s["flash_full_yield_ratio"].get(f"{p}/{r}"), s["flash_full_yield_ratio_err"].get(f"{p}/{r}"))])
    L += _table(["process", "region", "FullSim", "FlashSim", "Gen", "ratio"], rows)
    counts = s.get("flashsim_counts") or {}
    if counts:
        L += ["## FlashSim counts", "", "FlashSim (folds 1), summed over each run, per (Gen object, fold): Gen objects, "
              "reco objects, and the objects outside the acceptance, not reconstructed, dropped for non-finite inputs or "
              "simulated with their conditioning clamped to the training range.", ""]
        L += _table(["process", "counts"], [[PLAIN_LABELS.get(p, p), "<br>".join(describe_counts(c))]
                                            for p, c in counts.items() if c])
    L += ["## Cutflows", "", "Events after each cumulative step (unweighted).", ""]
    for mode, per in s["cutflow"].items():
        L += [f"**{mode}**", ""]
        L += _table(["process"] + list(CUTFLOW_STEPS),
                    [[PLAIN_LABELS.get(p, p)] + [_f(per[p][st], ".6g") for st in CUTFLOW_STEPS] for p in per])

    # -- chi2
    L += ["## FlashSim vs FullSim: χ²/ndf per histogram", "", f"{CHI2_DEFINITION}. FlashSim and FullSim here reconstruct "
          "the same Gen events, so Gen-level fluctuations are shared and this χ² is conservative (a perfect "
          "simulation gives χ²/ndf < 1 on average).", ""]
    header = ["process"] + [f"{VAR_TEXT.get(c.var, c.var)} ({c.region})" for c in COMPARISONS]
    rows = [[PLAIN_LABELS.get(p, p)] + [
        f"{_f(s['chi2_ndf'].get(f'{p}/{c.key}'), '.2f')} ({s['chi2_detail'][f'{p}/{c.key}']['ndf']})" for c in COMPARISONS]
        for p in processes]
    L += _table(header, rows)
    L += ["(ndf in parentheses)", ""]

    # -- upsampling
    L += [f"## Upsampling: folds 1 vs folds {folds}", "",
          f"{PLAIN_LABELS[SIGNAL]}, FlashSim with every Gen event reconstructed {folds} times, histogrammed with "
          "`FoldHist`: content Σ_ev w_ev·pdf_i^ev, error sqrt(Σ_ev (w_ev·pdf_i^ev)²), pdf_i^ev = (folds of ev in "
          f"bin i)/N. Mean statistical error = {ERROR_DEFINITION}. Well-measured variables gain less: the Gen-level "
          "fluctuation of each event is not reduced by upsampling.", ""]
    if up:
        L += _table(["histogram", "folds 1", f"folds {folds}", "reference study (folds 1 → 25)"], [
            ["DNN18Atan (SR)", _f(up.get("dnn_error_folds1"), ".1f") + " %", _f(up.get(f"dnn_error_folds{folds}"), ".1f") + " %", "32.3 → 14.2"],
            ["ln z* (SR)", _f(up.get("zstar_error_folds1"), ".1f") + " %", _f(up.get(f"zstar_error_folds{folds}"), ".1f") + " %", "14.4 → 11.2"],
        ])
    L += [_img(f, base) for f in figures.get("upsampling", [])] + [""]
    if se:
        ev = se["event_id"]
        L += [f"### One Gen event, {se['folds']} folds", "",
              f"{PLAIN_LABELS[se['process']]} event (run {ev['run']}, lumi {ev['luminosityBlock']}, event {ev['event']}, "
              f"entry {se['entry']}) reconstructed {se['folds']} times: {100 * se['fraction_selected']:.1f} % of the "
              f"folds pass the VBF selection (110 ≤ m_μμ < 150), {100 * se['fraction_sr']:.1f} % are in the signal "
              f"region. Its FullSim DNN18Atan is {_f(se['fullsim_dnn'], '.3f')}, the Gen-level one "
              f"{_f(se['gen_dnn'], '.3f')}; FlashSim spreads it as the detector would.", ""]
        L += [_img(f, base) for f in figures.get("single_event", [])] + [""]

    # -- FlashSim-driven variation
    ref, var = VARIATION
    L += ["## FlashSim-driven variation: alternative generator", "",
          f"REF = {PLAIN_LABELS[ref]}, VAR = {PLAIN_LABELS[var]} (`SpaceShower:dipoleRecoil = on`). Prediction "
          f"VAR_Full ≈ REF_Full · VAR_Flash / REF_Flash bin by bin, FlashSim with folds {folds}, each histogram per "
          "unit Σ genWeight; σ_pred² = pred²(σ_RF²/RF² + σ_VF²/VF² + σ_RFl²/RFl²) "
          "(`flashsim_coffea.outputs.flash_variation`). χ²/ndf of VAR_Full (the FullSim run of VAR) vs the "
          f"prediction with the definition above.", ""]
    L += _table(["histogram", "χ²", "ndf", "χ²/ndf"], [
        [f"{VAR_TEXT.get(v, v)} ({r})", _f(s["variation"][f"{r}/{v}"]["chi2"], ".2f"), str(s["variation"][f"{r}/{v}"]["ndf"]),
         _f(s["variation"][f"{r}/{v}"]["chi2_ndf"], ".2f")] for r, v in VARIATION_HISTS if f"{r}/{v}" in s["variation"]])
    L += [_img(f, base) for f in figures.get("variation", [])] + [""]

    # -- figures per process
    if figures.get("signal_vs_dy"):
        L += ["## Signal vs DY (shapes)", ""] + [_img(f, base) for f in figures["signal_vs_dy"]] + [""]
    L += ["## FullSim vs FlashSim per process", "",
          "Points: FullSim (reference) with statistical errors; red: FlashSim; dashed blue: Gen (m_μμ only: no "
          "detector smearing). Ratio panel: FlashSim / FullSim, band = FullSim statistical error.", ""]
    for p in processes:
        L += [f"### {PLAIN_LABELS.get(p, p)}", ""]
        L += [" ".join(_img(f, base) for f in figures.get(f"process/{p}", [])), ""]
    L += ["## Definitions", "", "```", STATS_DOC.strip(), "```", ""]
    L += ["## Settings", "", "```json", json.dumps(json_safe(s["settings"]), indent=1), "```", ""]
    with atomic_write(path) as tmp:
        Path(tmp).write_text("\n".join(L))
    return path
