"""Shared fixtures: real CMS NanoAOD location and small generated samples (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_NANOAOD = REPO.parent / "shared" / "data" / "real-nanoaod"


def real_file(name: str) -> Path:
    """Path of a real CMS NanoAOD test file; skips the test when ../shared is absent."""
    path = REAL_NANOAOD / name
    if not path.exists():
        pytest.skip(f"real CMS NanoAOD test file {path} not available")
    return path


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


def assert_same_output(a: dict, b: dict) -> None:
    """Two run outputs identical (flashsim_coffea.outputs.output_differences): bit for bit, except
    folded histograms (folds > 1, FoldHist or its saved plain copy), whose values and variances
    agree to floating-point rounding (relative 1e-12) with the same binning and folds."""
    from flashsim_coffea.outputs import output_differences

    assert output_differences(a, b, fold_rtol=1e-12) == []
