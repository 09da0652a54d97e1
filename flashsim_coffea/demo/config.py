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
    "UPSAMPLED",
    "UPSAMPLING_HISTS",
    "Comparison",
]

#: the five processes, in report order
PROCESSES = ("vbf_hmm", "vbf_hmm_alt", "ewk_mumujj", "dy", "ttbar")
PROCESS_LABELS = {
    "vbf_hmm": r"VBF H$\to\mu\mu$",
    "vbf_hmm_alt": r"VBF H$\to\mu\mu$ (alt.)",
    "ewk_mumujj": r"EWK $\mu\mu jj$",
    "dy": r"DY $\mu\mu$+jets",
    "ttbar": r"$t\bar{t}$",
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
#: closure histograms; the first is the headline ``closure_chi2_ndf``
CLOSURE_HISTS = (("SR", "dnn_atanh"), ("SR", "log_zstar"), ("SR", "rpt"), ("presel", "j2_pt"))


@dataclass
class DemoConfig:
    """Settings of one demo run (the ``flashsim demo`` options).

    samples: process → ROOT file (default: the bundled samples, or generated ones with
    ``events``); models: {"jets": dir, "muons": dir} (default: the shipped FlashSim models);
    ``dnn``: True (shipped DNN) or a model directory.
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
