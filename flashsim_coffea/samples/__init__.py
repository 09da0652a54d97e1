"""Small bundled NanoAOD samples (package data) for tests and ``flashsim demo``.

Each is made by ``flashsim generate`` with the fixed settings of :data:`BUNDLED`; regenerate all
of them with ``python -m flashsim_coffea.samples`` (a few minutes on one core; DY with the VBF
filter dominates). ``dy`` is DY with the VBF filter (what the VBF signal region sees), ``dy_incl``
DY without a filter (what the preselection sees), ``ttbar_mumu`` tt̄ with both W → μν (the tt̄
that reaches the dimuon selection) and ``ttbar_mumu_vbf`` the same with the VBF filter and
100 < m_μμ < 160 GeV (``vbf_window``: the tt̄ of the signal region and sidebands). Larger samples: run ``flashsim generate`` yourself with more events.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import UserError

#: sample name → generate() arguments; seeds fixed so the files are reproducible bit by bit. The
#: name is the ``flashsim generate`` process unless the entry names another one under
#: ``"process"`` (``dy_incl``: the ``dy`` process without a filter); see :func:`generate_args`.
BUNDLED: dict[str, dict] = {
    "ttbar": {"n_events": 2000, "seed": 101},
    "dy": {"n_events": 2400, "seed": 102, "filter_name": "vbf"},
    "ewk_mumujj": {"n_events": 1000, "seed": 103, "filter_name": "vbf"},
    "vbf_hmm": {"n_events": 2000, "seed": 104},
    "vbf_hmm_alt": {"n_events": 2000, "seed": 105},
    "dy_incl": {"process": "dy", "n_events": 4000, "seed": 106},
    "ttbar_mumu": {"n_events": 2000, "seed": 107},
    "ttbar_mumu_vbf": {"process": "ttbar_mumu", "n_events": 1500, "seed": 108, "filter_name": "vbf_window"},
}


def generate_args(name: str) -> tuple[str, dict]:
    """(``flashsim generate`` process, its other arguments) of the bundled sample ``name``."""
    settings = dict(BUNDLED[name])
    return settings.pop("process", name), settings


def sample_dir() -> Path:
    return Path(str(resources.files(__name__)))


def sample_path(process: str) -> Path:
    """Path of the bundled sample ``process`` (a name of :data:`BUNDLED`); clear error if it is unknown or not installed."""
    if process not in BUNDLED:
        raise UserError(f"no bundled sample for {process!r}; bundled: {', '.join(BUNDLED)}")
    path = sample_dir() / f"{process}.root"
    if not path.exists():
        raise UserError(
            f"bundled sample {path} is missing (broken install?); reinstall flashsim-coffea or "
            "regenerate the samples with `python -m flashsim_coffea.samples`"
        )
    return path
