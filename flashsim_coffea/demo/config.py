"""What the demo runs: processes, histograms shown, settings (:class:`DemoConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
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
    "VARIATION",
    "VARIATION_HISTS",
    "Comparison",
]

#: the processes, in report order (``dy_incl``: DY without a filter; ``ttbar_mumu``: tt̄ with both W → μν;
#: ``ttbar_mumu_vbf``: the same with the VBF filter and 100 < m_μμ < 160 GeV)
PROCESSES = ("vbf_hmm", "vbf_hmm_alt", "ewk_mumujj", "dy", "dy_incl", "ttbar", "ttbar_mumu", "ttbar_mumu_vbf")
PROCESS_LABELS = {
    "vbf_hmm": r"VBF H$\to\mu\mu$",
    "vbf_hmm_alt": r"VBF H$\to\mu\mu$ (alt.)",
    "ewk_mumujj": r"EWK $\mu\mu jj$",
    "dy": r"DY $\mu\mu$+jets (VBF filter)",
    "dy_incl": r"DY $\mu\mu$+jets",
    "ttbar": r"$t\bar{t}$ (incl.)",
    "ttbar_mumu": r"$t\bar{t}\to\mu\nu\mu\nu$",
    "ttbar_mumu_vbf": r"$t\bar{t}\to\mu\nu\mu\nu$ (VBF filter)",
}
SIGNAL = "vbf_hmm"
#: the FlashSim-driven variation: (REF, VAR), VAR the alternative generator
VARIATION = ("vbf_hmm", "vbf_hmm_alt")
#: FlashSim with folds N runs on these (upsampling comparison and FlashSim-driven variation)
UPSAMPLED = VARIATION


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


#: the per-process figures of the reference FlashSim study (docs/analysis.md; Gen only on m_μμ, where it shows no smearing)
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
#: (it contains ``ttbar_mumu``); DY and tt̄ are unfiltered in the preselection (the VBF filters cut
#: into it: ``dy_incl``, ``ttbar_mumu``) and VBF-filtered in SR and SB (``dy``, ``ttbar_mumu_vbf``),
#: where the filters (looser than the reco VBF cuts and the mass window) do not bias them and give
#: them hundreds of simulated events instead of a few
STACK = {
    "presel": ("ttbar_mumu", "dy_incl", "ewk_mumujj", "vbf_hmm"),
    "SR": ("ttbar_mumu_vbf", "dy", "ewk_mumujj", "vbf_hmm"),
    "SB": ("ttbar_mumu_vbf", "dy", "ewk_mumujj", "vbf_hmm"),
}
#: the stacked figures ``stack_<region>_<var>.png``
STACK_HISTS = (("SR", "mass"), ("SR", "dnn_atanh"), ("presel", "mass"))
#: histograms of the FlashSim-driven variation; the first is the headline ``variation_chi2_ndf``
VARIATION_HISTS = (("SR", "dnn_atanh"), ("SR", "log_zstar"), ("SR", "rpt"), ("presel", "j2_pt"))


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
