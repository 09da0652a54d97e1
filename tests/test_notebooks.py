"""The notebooks run top to bottom (nbclient) on tiny inputs, set through their parameter variables.

Every notebook's parameter cell reads ``FLASHSIM_NB_EVENTS`` (events per sample),
``FLASHSIM_NB_SAMPLES`` (a folder of ``<process>.root``), ``FLASHSIM_NB_JETS_MODEL`` /
``FLASHSIM_NB_MUONS_MODEL`` (model folders, ``default`` = shipped) and ``FLASHSIM_NB_WORKERS``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_demo import shipped_flows_present

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SAMPLES = {"vbf_hmm": 150, "vbf_hmm_alt": 150, "dy": 50, "dy_incl": 50}  # same sizes/seeds as test_demo: shared generation


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory, request) -> dict[str, str]:
    """The first 100 events of the bundled samples (small generated ones if they are missing)."""
    from flashsim_coffea.samples import sample_dir

    env = {"FLASHSIM_NB_EVENTS": "100", "FLASHSIM_NB_WORKERS": "1"}
    if not all((sample_dir() / f"{p}.root").is_file() for p in SAMPLES):
        generated = request.getfixturevalue("generated")
        folder = tmp_path_factory.mktemp("nb_samples")
        seeds = {"vbf_hmm": 30, "vbf_hmm_alt": 31, "dy": 33, "dy_incl": 34}
        for p, n in SAMPLES.items():  # dy_incl: the dy process without a filter
            (folder / f"{p}.root").symlink_to(generated("dy" if p == "dy_incl" else p, n, seed=seeds[p])[0])
        env["FLASHSIM_NB_SAMPLES"] = str(folder)
    if not shipped_flows_present():
        tiny = request.getfixturevalue("tiny_models")
        env["FLASHSIM_NB_JETS_MODEL"], env["FLASHSIM_NB_MUONS_MODEL"] = str(tiny["jets"]), str(tiny["muons"])
    return env


@pytest.mark.slow  # whole notebooks (10-30 s each)
@pytest.mark.parametrize("name, figures", [("quickstart", 3), ("distributed", 1), ("validation", 4), ("zmumu_jets", 4)])
def test_notebook_runs(name, figures, notebook_env, tmp_path, monkeypatch):
    for k, v in notebook_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("FLASHSIM_NB_OUTPUT", str(tmp_path / "validation-report"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert images >= figures, f"{name}: expected {figures} figures in the outputs, got {images}"
