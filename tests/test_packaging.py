"""What flashsim-coffea installs: one top-level package, ``flashsim_coffea``.

The analysis processors live in the repository's top-level ``processors/`` folder but are installed
as ``flashsim_coffea.processors`` (setup.py), so that a user's own ``processors`` package — a
common name in coffea analyses — is never shadowed by ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter with ``cwd``, as a user would."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _installed_distribution() -> metadata.Distribution:
    """The installed flashsim-coffea (site-packages), not the checkout's ``*.egg-info`` that the
    repository root on sys.path would show first (its SOURCES.txt lists the source tree)."""
    site = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    found = list(metadata.distributions(name="flashsim-coffea", path=site))
    assert found, f"flashsim-coffea is not installed in {site} (pip install -e .)"
    return found[0]


def test_no_top_level_processors_is_installed():
    dist = _installed_distribution()
    top_level = (dist.read_text("top_level.txt") or "").split()
    assert top_level == ["flashsim_coffea"], top_level
    files = [str(f) for f in dist.files or ()]
    assert files, "the installed distribution lists no files"
    assert not [f for f in files if f.split("/")[0] == "processors"], files
    assert "flashsim-coffea" not in metadata.packages_distributions().get("processors", [])


def test_a_users_own_processors_package_is_not_shadowed(tmp_path):
    (tmp_path / "processors").mkdir()
    (tmp_path / "processors" / "__init__.py").write_text("")
    (tmp_path / "processors" / "mine.py").write_text("WHOSE = 'mine'\n")
    out = _python(
        "import json, processors.mine, flashsim_coffea.processors.vbf_hmumu as v\n"
        "print(json.dumps({'mine': processors.mine.WHOSE, 'file': processors.mine.__file__,\n"
        "                  'processor': v.VBFHmmProcessor.__module__}))",
        cwd=tmp_path,
    )
    assert out["mine"] == "mine"
    assert Path(out["file"]).resolve() == (tmp_path / "processors" / "mine.py").resolve()
    assert out["processor"] == "flashsim_coffea.processors.vbf_hmumu"


def test_the_processors_resolve_from_the_repository_root():
    """``python -m pytest`` puts the root first on sys.path, so ``flashsim_coffea`` is the checkout's
    folder (which has no ``processors/``): the name must still resolve, to the checkout's
    ``processors/``, with the editable install's finder and without it (a wheel install, or none)."""
    for drop_editable_finder in (False, True):
        out = _python(
            "import json, sys\n"
            f"if {drop_editable_finder}:\n"
            "    sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n"
            "import flashsim_coffea, flashsim_coffea.processors.vbf_hmumu as v\n"
            "print(json.dumps({'package': flashsim_coffea.__file__, 'processor': v.__file__}))",
            cwd=ROOT,
        )
        assert Path(out["package"]).resolve() == ROOT / "flashsim_coffea" / "__init__.py"
        assert Path(out["processor"]).resolve() == ROOT / "processors" / "vbf_hmumu.py"
