"""The physics processes ``flashsim generate`` knows: Pythia 8 settings at √s = 13 TeV.

All use Pythia's internal PDF (no LHAPDF), with multiparton interactions and hadronization on
(Pythia defaults). Cross sections are Pythia's own leading-order estimates (``sigmaGen``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError

COMMON = (
    "Beams:eCM = 13000.",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Init:showProcesses = off",
    "Init:showMultipartonInteractions = off",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Print:quiet = on",
)

_VBF_H = (
    "HiggsSM:ff2Hff(t:WW) = on",
    "HiggsSM:ff2Hff(t:ZZ) = on",
    "25:onMode = off",
    "25:onIfMatch = 13 -13",
)


@dataclass(frozen=True)
class Process:
    name: str
    description: str
    settings: tuple[str, ...]
    notes: str = ""
    default_filter: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def pythia_settings(self) -> tuple[str, ...]:
        return COMMON + self.settings


PROCESSES: dict[str, Process] = {
    p.name: p
    for p in (
        Process(
            "ttbar",
            "tt̄ production, all decays (training sample for the flows)",
            ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
        ),
        Process(
            "ttbar_mumu",
            "tt̄ with both W → μν (dimuon tt̄: the tt̄ background of the H→μμ analysis)",
            ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 13"),
            notes=(
                "Both W bosons forced to μν (W → τν → μ and non-prompt muons are not included). "
                "Pythia's sigmaGen already is the physical σ(tt̄ → bμν bμν): it multiplies the hard "
                "cross section by the open-width fraction of each resonance, including its secondary "
                "decays (t: 0.1081 = BR(W → μν)), so sigmaGen = σ(tt̄) · BR(W → μν)²; checked against the "
                "inclusive ttbar process (300 events each: 6.01 / 504.8 pb = 0.0119 vs 0.1081² = "
                "0.0117). Nothing is multiplied in."
            ),
        ),
        Process(
            "dy",
            "Drell–Yan Z/γ* → μμ + jet, 105 < m_μμ < 160 GeV (around the H→μμ window)",
            (
                "WeakBosonAndParton:qqbar2gmZg = on",
                "WeakBosonAndParton:qg2gmZq = on",
                "WeakZ0:gmZmode = 0",
                "PhaseSpace:pTHatMin = 20.",
                "23:mMin = 105.",
                "23:mMax = 160.",
                "23:onMode = off",
                "23:onIfMatch = 13 -13",
            ),
            notes=(
                "Z/γ*+parton matrix elements with pT(hat) > 20 GeV (the VBF region needs two hard "
                "jets, which the inclusive ffbar → γ*/Z process only gets from the shower); only "
                "~1 % of events reach the VBF region: use --filter vbf."
            ),
        ),
        Process(
            "ewk_mumujj",
            "EWK μμjj stand-in: VBF production of a broad scalar → μμ, 100 < m_μμ < 160 GeV",
            _VBF_H
            + (
                "25:m0 = 105.0",
                "25:mWidth = 30.0",
                "25:doForceWidth = on",
                "25:mMin = 100.",
                "25:mMax = 160.",
            ),
            notes=(
                "Pythia 8 has no EWK Zjj process. A scalar produced by WW/ZZ fusion gives the "
                "tagging-jet topology (two forward jets, rapidity gap). The design's Z-mass scalar "
                "restricted to the analysis window makes Pythia's init fail (vanishing cross "
                "section), so the stand-in is a scalar at 105 GeV with a forced 30 GeV width, cut to "
                "100–160 GeV: a falling m_μμ spectrum across the window, like the Z/γ* tail. Muon "
                "angular distributions are those of a scalar, and the cross section (Pythia's, for "
                "this scalar) is not the EWK Zjj one."
            ),
        ),
        Process(
            "vbf_hmm",
            "VBF H → μμ, m_H = 125 GeV (signal)",
            _VBF_H + ("25:m0 = 125.0",),
        ),
        Process(
            "vbf_hmm_alt",
            "VBF H → μμ with dipole recoil in the space-like shower (alternative generator)",
            _VBF_H + ("25:m0 = 125.0", "SpaceShower:dipoleRecoil = on"),
            notes=(
                "Stands in for the second generator of the reference FlashSim study (POWHEG vs aMC@NLO; "
                "docs/analysis.md): dipole recoil "
                "changes the third-jet activity between the tagging jets strongly."
            ),
        ),
    )
}


def get_process(name: str) -> Process:
    try:
        return PROCESSES[name]
    except KeyError:
        raise UserError(
            f"unknown process {name!r}; valid processes: {', '.join(PROCESSES)} "
            "(see `flashsim generate --list`)"
        ) from None


def describe_processes() -> str:
    """Human-readable list of the processes with their settings (``flashsim generate --list``)."""
    lines = []
    for p in PROCESSES.values():
        lines.append(f"{p.name:12s} {p.description}")
        for s in p.settings:
            lines.append(f"{'':14s}{s}")
        if p.notes:
            lines.append(f"{'':14s}note: {p.notes}")
        lines.append("")
    lines.append("Common settings: " + "; ".join(s for s in COMMON if not s.startswith(("Next:", "Init:", "Print:"))))
    return "\n".join(lines)
