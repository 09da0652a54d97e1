"""Shared fixtures: the real CMS NanoAOD files (``real_file``, ``needs_real``), small generated
samples (made once per session), tiny models trained on them, the runner tests' samples and
reference run; and the ``slow`` mark of every test that needs Pythia."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the real CMS NanoAOD test files (README there), outside the repository: absent, their tests skip
REAL_NANOAOD = REPO.parent / "shared" / "data" / "real-nanoaod"
REAL_FILES = ("nano_dy.root", "nano_dimuon.root", "nano_tt_v12.root")

#: skip mark of a test reading the real CMS files (``REAL_NANOAOD / name``), decided at collection so
#: that no fixture is built for a test that skips; inside a test, :func:`real_file` does the same
needs_real = pytest.mark.skipif(not all((REAL_NANOAOD / n).is_file() for n in REAL_FILES),
                                reason=f"real CMS NanoAOD test files not available in {REAL_NANOAOD}")


def real_file(name: str) -> Path:
    """Path of a real CMS NanoAOD test file; skips the test when ../shared is absent."""
    path = REAL_NANOAOD / name
    if not path.is_file():
        pytest.skip(f"real CMS NanoAOD test file {path} not available")
    return path


#: fixtures that run Pythia: a test needing one (directly or through another fixture, e.g.
#: tiny_models, files) is marked ``slow`` at collection; a test calling Pythia itself carries the mark
PYTHIA_FIXTURES = frozenset({"generated"})


def pytest_collection_modifyitems(config, items):
    """The ``slow`` tier (pyproject.toml's markers): every test whose fixtures run Pythia."""
    for item in items:
        if PYTHIA_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Factory of small generated samples, cached per (process, n, seed, filter) for the session."""
    from flashsim_coffea.generate.driver import generate

    cache: dict = {}
    folder = tmp_path_factory.mktemp("generated")

    def make(process: str, n: int = 100, seed: int = 1, filter_name: str | None = None, block_size: int = 500):
        key = (process, n, seed, filter_name, block_size)
        if key not in cache:
            path = folder / f"{process}_{n}_{seed}_{filter_name}_{block_size}.root"
            cache[key] = (path, generate(process, n, seed, path, filter_name=filter_name, progress=False, block_size=block_size))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_models(generated, tmp_path_factory):
    """Tiny jets and muons flows trained (seconds) on a small generated tt̄ sample: {name: model dir}."""
    from flashsim_coffea.flows.data import load_data, save_data
    from flashsim_coffea.flows.train import TINY, TrainConfig, train
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.objects.extract import extract_files

    path, _ = generated("ttbar", 300, seed=9)
    folder = tmp_path_factory.mktemp("tiny_models")
    out = {}
    for name in ("jets", "muons"):
        spec = get_spec(name)
        data, prov = extract_files(spec, [str(path)], progress=False)
        npz = save_data(folder / f"{name}.npz", data.cond, data.targets, data.keys, data.gen, prov)
        train(spec, load_data(npz), folder / name, TrainConfig(**TINY), progress=False)
        out[name] = folder / name
    return out


@pytest.fixture(scope="module")
def files(generated) -> dict[str, str]:
    """The generated samples of the runner tests (tests/test_run.py, tests/test_runner.py): {"vbf", "ewk"} → path."""
    return {"vbf": str(generated("vbf_hmm", 200, seed=11)[0]), "ewk": str(generated("ewk_mumujj", 120, seed=22)[0])}


def run_fileset(files: dict[str, str]) -> dict:
    """The coffea fileset of :func:`files`."""
    return {"vbf": {"files": {files["vbf"]: "Events"}}, "ewk": {"files": {files["ewk"]: "Events"}}}


@pytest.fixture(scope="module")
def reference(files):
    """The fullsim run of :func:`files` (iterative executor, one chunk per file) that other runs must equal."""
    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.runner import run_processor

    return run_processor(run_fileset(files), VBFHmmProcessor(mode="fullsim"), "iterative", chunksize=1000)


def assert_same_output(a: dict, b: dict) -> None:
    """Two run outputs identical (flashsim_coffea.outputs.output_differences): bit for bit, except
    folded histograms (folds > 1, FoldHist or its saved plain copy), whose values and variances
    agree to floating-point rounding (relative 1e-12) with the same binning and folds."""
    from flashsim_coffea.outputs import output_differences

    assert output_differences(a, b, fold_rtol=1e-12) == []


#: the bundled DY sample the bad-input tests cut and edit
DY_SAMPLE = REPO / "flashsim_coffea" / "samples" / "dy.root"


def dy_arrays(n: int, drop: tuple[str, ...] = ()) -> dict:
    """The first ``n`` events of the bundled dy.root as flat branches (counters left out, so a
    writer rebuilds them), without the branches starting with a prefix in ``drop``."""
    import uproot

    from flashsim_coffea.nanoaod.io import is_counter

    tree = uproot.open(DY_SAMPLE)["Events"]
    names = [b for b in tree.keys() if not is_counter(b, tree.keys()) and not (drop and b.startswith(drop))]
    return tree.arrays(names, entry_stop=n, how=dict)


def dy_slice(dst, n: int = 200, drop: tuple[str, ...] = (), edit=None):
    """A NanoAOD file ``dst`` with the first ``n`` events of dy.root (:func:`dy_arrays`), its Runs
    and metadata; ``edit(arrays)`` may change the arrays before they are written."""
    import uproot

    from flashsim_coffea.nanoaod.io import NanoAODWriter, read_metadata

    arrays = dy_arrays(n, drop)
    if edit is not None:
        edit(arrays)
    w = NanoAODWriter(dst)
    w.extend(arrays)
    w.close(metadata=read_metadata(DY_SAMPLE), runs=uproot.open(DY_SAMPLE)["Runs"].arrays(how=dict))
    return dst


@contextlib.contextmanager
def read_only_folder(parent):
    """A folder ``parent/ro`` the test cannot write into (the test is skipped where the user can
    write anywhere, e.g. root); its permissions are restored afterwards."""
    ro = parent / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        yield ro
    finally:
        ro.chmod(0o700)
