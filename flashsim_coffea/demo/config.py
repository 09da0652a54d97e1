"""What the demo runs: processes, histograms shown, settings (:class:`DemoConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLOSURE",
    "CLOSURE_HISTS",
    "COMPARISONS",
    "DemoConfig",
    "PROCESSES",
    "PROCESS_LABELS",
    "SIGNAL",
    "SIGNAL_VS_DY",
    "STACK",
    "STACK_HISTS",
    "UPSAMPLED",
    "UPSAMPLING_HISTS",
    "Comparison",
]

#: the processes, in report order (``dy_incl``: DY without a filter; ``ttbar_mumu``: tt̄ with both W → μν)
PROCESSES = ("vbf_hmm", "vbf_hmm_alt", "ewk_mumujj", "dy", "dy_incl", "ttbar", "ttbar_mumu")
PROCESS_LABELS = {
    "vbf_hmm": r"VBF H$\to\mu\mu$",
    "vbf_hmm_alt": r"VBF H$\to\mu\mu$ (alt.)",
    "ewk_mumujj": r"EWK $\mu\mu jj$",
    "dy": r"DY $\mu\mu$+jets (VBF filter)",
    "dy_incl": r"DY $\mu\mu$+jets",
    "ttbar": r"$t\bar{t}$ (incl.)",
    "ttbar_mumu": r"$t\bar{t}\to\mu\nu\mu\nu$",
}
SIGNAL = "vbf_hmm"
#: the systematic-variation pair: (REF, VAR)
CLOSURE = ("vbf_hmm", "vbf_hmm_alt")
#: FlashSim with folds N runs on these (upsampling comparison and closure)
UPSAMPLED = CLOSURE


@dataclass(frozen=True)
class Comparison:
    """One per-process FullSim vs FlashSim figure: histogram ``region/var``."""

    region: str
    var: str
    log: bool = False
    with_gen: bool = False
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.region}/{self.var}"


#: the per-process figures the seed showed (Gen only on m_μμ, where it shows no smearing)
COMPARISONS = (
    Comparison("SR", "dnn_atanh", log=True, note="signal region"),
    Comparison("SR", "rpt", note="signal region"),
    Comparison("SR", "log_zstar", note="signal region"),
    Comparison("presel", "mass", with_gen=True, note="preselection"),
    Comparison("presel", "mu1_iso", log=True, note="preselection"),
    Comparison("presel", "j2_pt", log=True, note="preselection"),
)
#: histograms overlaid for signal vs DY (shapes)
SIGNAL_VS_DY = (("SR", "rpt"), ("SR", "log_zstar"))
#: upsampling comparison: (region, var, short name in summary.json)
UPSAMPLING_HISTS = (("SR", "dnn_atanh", "dnn"), ("SR", "log_zstar", "zstar"))
#: the σ·L-normalised stack per region, bottom to top (signal last). One sample per physics process:
#: not ``vbf_hmm_alt`` (the alternative-generator variation of the signal) nor the inclusive ``ttbar``
#: (it contains ``ttbar_mumu``); DY is the unfiltered ``dy_incl`` in the preselection (the VBF filter
#: cuts into it) and the VBF-filtered ``dy`` in SR and SB, where the filter (looser than the reco
#: VBF cuts) does not bias it and it has ~7× more simulated events
STACK = {
    "presel": ("ttbar_mumu", "dy_incl", "ewk_mumujj", "vbf_hmm"),
    "SR": ("ttbar_mumu", "dy", "ewk_mumujj", "vbf_hmm"),
    "SB": ("ttbar_mumu", "dy", "ewk_mumujj", "vbf_hmm"),
}
#: the stacked figures ``stack_<region>_<var>.png``
STACK_HISTS = (("SR", "mass"), ("SR", "dnn_atanh"), ("presel", "mass"))
#: closure histograms; the first is the headline ``closure_chi2_ndf``
CLOSURE_HISTS = (("SR", "dnn_atanh"), ("SR", "log_zstar"), ("SR", "rpt"), ("presel", "j2_pt"))


@dataclass
class DemoConfig:
    """Settings of one demo run (the ``flashsim demo`` options).

    samples: process → ROOT file (default: the bundled samples, or generated ones with
    ``events``); models: {"jets": dir, "muons": dir} (default: the shipped FlashSim models);
    ``dnn``: True (shipped DNN) or a model directory; ``lumi_fb``: the integrated luminosity
    [fb⁻¹] of the σ·L-normalised stack and expected-events table.
    """

    output: Path = Path("flashsim-demo")
    events: int | None = None
    folds: int = 25
    single_event_folds: int = 10_000
    executor: str = "futures"
    workers: int = 2
    chunksize: int = 1000
    force: bool = False
    samples: dict[str, Path] | None = None
    sample_dir: Path | None = None
    models: dict[str, Path] | None = None
    dnn: bool | str = True
    progress: bool = True
    processes: tuple[str, ...] = field(default=PROCESSES)
    lumi_fb: float = 137.0
