"""``flashsim run``: identical histograms from every executor and chunk size; output files;
bad input reported, never silently lost."""

from __future__ import annotations

import json
from pathlib import Path

import hist
import numpy as np
import pytest
import uproot

from conftest import assert_same_output, run_fileset as _fileset  # fixtures files, reference: conftest
from flashsim_coffea.cli import main
from flashsim_coffea.runner import load_fileset, run_processor
from flashsim_coffea.errors import UserError
from flashsim_coffea.processors import VBFHmmProcessor


def test_reference_output(reference):
    assert reference["vbf"]["nevents"] == 200 and reference["ewk"]["nevents"] == 120
    assert reference["vbf"]["skipped"] == {} and reference["vbf"]["empty_files"] == []
    assert reference["vbf"]["hists"]["SR"]["mass"].values(flow=True).sum() > 0


@pytest.mark.parametrize("chunksize", [1000, 37])
def test_iterative_chunk_sizes_identical(files, reference, chunksize):
    out = run_processor(_fileset(files), VBFHmmProcessor(mode="fullsim"), "iterative", chunksize=chunksize)
    if chunksize == 37:
        assert out["vbf"]["chunks"] >= 4
    assert_same_output(reference, out)


def test_futures_executor_identical(files, reference):
    out = run_processor(_fileset(files), VBFHmmProcessor(mode="fullsim"), "futures", workers=2, chunksize=50)
    assert_same_output(reference, out)


def test_cli_fileset_json_coffea_and_root_outputs(files, reference, tmp_path):
    from coffea.util import load

    fs = tmp_path / "fileset.json"
    fs.write_text(json.dumps({"vbf": [files["vbf"]], "ewk": {"files": [files["ewk"]]}}))
    out, root = tmp_path / "out.coffea", tmp_path / "hists.root"
    assert main(["run", str(fs), "--mode", "fullsim", "--chunksize", "64", "-o", str(out), "--root", str(root)]) == 0
    res = load(str(out))
    assert_same_output(reference, res)
    with uproot.open(root) as f:
        h = f["vbf/SR/mass"].to_hist()
    np.testing.assert_array_equal(h.values(), res["vbf"]["hists"]["SR"]["mass"].values())
    np.testing.assert_array_equal(h.variances(), res["vbf"]["hists"]["SR"]["mass"].variances())


def test_fileset_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_fileset(["a/x.root", "./b/y.root"]) == {"x": {"files": {str(tmp_path / "a/x.root"): "Events"}},
                                                       "y": {"files": {str(tmp_path / "b/y.root"): "Events"}}}
    fs = tmp_path / "f.json"
    fs.write_text(json.dumps({"d": {"files": {"rel.root": "Events"}}}))
    assert load_fileset([str(fs)]) == {"d": {"files": {str(tmp_path / "rel.root"): "Events"}}}
    # metadata and a dataset treename are kept
    fs.write_text(json.dumps({"d": {"files": ["rel.root"], "treename": "T", "metadata": {"xsec": 2.5, "tag": "x"}}}))
    assert load_fileset([str(fs)]) == {"d": {"files": {str(tmp_path / "rel.root"): "T"}, "metadata": {"xsec": 2.5, "tag": "x"}}}
    fs.write_text(json.dumps({"d": {"files": ["rel.root"], "metadata": {"dataset": "y"}}}))
    with pytest.raises(UserError, match="reserved name.*dataset"):
        load_fileset([str(fs)])
    fs.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_fileset([str(fs)])
    with pytest.raises(UserError, match="no such fileset"):
        load_fileset([str(tmp_path / "missing.json")])


def _truncated(src: str, dst: Path) -> str:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return str(dst)


def _corrupt_basket(src: str, dst: Path) -> str:
    """Scramble the compressed payload of the first Muon_pt basket."""
    data = bytearray(Path(src).read_bytes())
    br = uproot.open(src)["Events"]["Muon_pt"]
    seek, nbytes = int(br.member("fBasketSeek")[0]), int(br.member("fBasketBytes")[0])
    for i in range(seek + nbytes // 2, seek + nbytes - 4):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return str(dst)


def _empty_file(dst: Path) -> str:
    with uproot.recreate(dst) as f:
        f.mktree("Events", {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64, "genWeight": np.float32})
        f["Events"].extend({"run": np.zeros(0, np.uint32), "luminosityBlock": np.zeros(0, np.uint32),
                            "event": np.zeros(0, np.uint64), "genWeight": np.zeros(0, np.float32)})  # fmt: skip
    return str(dst)


def test_bad_files_are_reported(files, tmp_path):
    bad = {
        "truncated": _truncated(files["ewk"], tmp_path / "trunc.root"),
        "corrupt": _corrupt_basket(files["ewk"], tmp_path / "corrupt.root"),
        "empty": _empty_file(tmp_path / "empty.root"),
    }
    fileset = {"mix": {"files": {files["vbf"]: "Events", **{p: "Events" for p in bad.values()}}}}
    out = run_processor(fileset, VBFHmmProcessor(mode="fullsim"), "iterative", chunksize=1000, skip_bad_files=True)["mix"]
    assert out["nevents"] == 200  # only the good file
    assert out["empty_files"] == [bad["empty"]]
    assert set(out["skipped"]) == {bad["truncated"], bad["corrupt"]}
    assert out["skipped"][bad["corrupt"]] == 120
    # without --skip-bad-files: a clear error, not a silent loss
    with pytest.raises(Exception, match="Data corruption|DecompressionError|corrupt|trunc|cannot open"):
        run_processor({"c": {"files": {bad["corrupt"]: "Events"}}}, VBFHmmProcessor(mode="fullsim", dnn=False), "iterative")


@pytest.mark.slow  # runs Pythia
def test_cli_missing_branches_is_one_clear_line(tmp_path, capsys):
    from flashsim_coffea.generate.driver import generate

    gen_only = tmp_path / "gen_only.root"
    generate("vbf_hmm", 10, 5, gen_only, progress=False, reference=False)
    for executor in ("iterative", "futures"):  # checked up front, whatever the executor
        assert main(["run", str(gen_only), "--mode", "fullsim", "--executor", executor, "-o", str(tmp_path / "o.coffea")]) == 2
        err = capsys.readouterr().err
        assert "missing branch(es) Muon_pt" in err and "Jet_puId" in err and "Traceback" not in err
    assert main(["run", str(gen_only), "--mode", "gen", "--no-dnn", "-o", str(tmp_path / "o.coffea")]) == 0
    assert main(["run", str(gen_only), "--mode", "fullsim", "--folds", "0", "-o", str(tmp_path / "o.coffea")]) == 2
    assert main(["run", str(gen_only), "--mode", "fullsim", "--device", "cuda", "-o", str(tmp_path / "o.coffea")]) == 2
    assert "--device/--precision/--threads need --mode flashsim" in capsys.readouterr().err
    assert main(["run", str(gen_only), "--mode", "fullsim", "--precision", "bf16", "-o", str(tmp_path / "o.coffea")]) == 2
    assert "--threads need --mode flashsim" in capsys.readouterr().err
    assert main(["run", str(gen_only), "--mode", "fullsim", "--threads", "2", "-o", str(tmp_path / "o.coffea")]) == 2
    assert "--threads need --mode flashsim" in capsys.readouterr().err
    assert main(["run", str(gen_only), "--mode", "flashsim", "--threads", "0", "-o", str(tmp_path / "o.coffea")]) == 2
    err = capsys.readouterr().err
    assert "threads" in err and "≥ 1" in err and "Traceback" not in err
    assert main(["run", str(gen_only), "--mode", "flashsim", "--precision", "half", "-o", str(tmp_path / "o.coffea")]) == 2
    assert "unknown sampling precision 'half'" in capsys.readouterr().err


class _DiesOnceProcessor(VBFHmmProcessor):
    """Kills its worker process the first time it sees the chunk starting at entry 0."""

    def __init__(self, marker: str, **kw):
        super().__init__(**kw)
        self.marker = marker

    def process(self, events):
        import os

        if events.metadata.get("entrystart") == 0 and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)  # the dask worker process dies mid-task
        return super().process(events)


def test_dask_identical_even_with_a_worker_killed(files, reference, tmp_path):
    """Dask LocalCluster with 2 workers, one of which dies mid-task: the retried run gives
    the same histograms as the iterative reference (this is also the plain Dask check)."""
    marker = tmp_path / "killed"
    proc = _DiesOnceProcessor(str(marker), mode="fullsim")
    out = run_processor(_fileset(files), proc, "dask", workers=2, chunksize=50)
    assert marker.exists()  # a worker really died
    assert_same_output(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("folds", [5])
def test_flashsim_mode_identical_across_chunkings_and_executors(files, tiny_models, folds, tmp_path):
    """FlashSim injection (tiny flows) through the processor hook: same histograms for every
    chunk size and executor with folds (FoldHist, identical to floating-point rounding:
    assert_same_output; folds = 1 is the fullsim path above plus the injection, whose chunk
    independence tests/test_inject.py covers). The saved output opens without flashsim_coffea."""
    from flashsim_coffea.hists import FoldHist
    from flashsim_coffea.inject import FlashSim

    sim = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"])
    fileset = {"vbf": {"files": {files["vbf"]: "Events"}}}
    make = lambda: VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim)  # noqa: E731
    ref = run_processor(fileset, make(), "iterative", chunksize=1000)
    assert ref["vbf"]["cutflow"]["all"] == 200 * folds
    assert type(ref["vbf"]["hists"]["SR"]["mass"]) is (FoldHist if folds > 1 else hist.Hist)
    assert_same_output(ref, run_processor(fileset, make(), "iterative", chunksize=37))
    assert_same_output(ref, run_processor(fileset, make(), "futures", workers=2, chunksize=50))
    # folds simulated and analysed in batches of ≤ 150 (event, fold) pairs: same histograms
    batched = VBFHmmProcessor(mode="flashsim", folds=folds, flashsim=sim, max_fold_events=150)
    assert_same_output(ref, run_processor(fileset, batched, "iterative", chunksize=60))
    # the same through the command line
    from coffea.util import load

    out = tmp_path / "flash.coffea"
    args = ["run", files["vbf"], "--mode", "flashsim", "--folds", str(folds), "--chunksize", "80", "-o", str(out),
            "--jets-model", str(tiny_models["jets"]), "--muons-model", str(tiny_models["muons"])]  # fmt: skip
    assert main(args) == 0
    res = load(str(out))
    res["vbf"] = res.pop(Path(files["vbf"]).stem)
    assert_same_output(ref, res)
    saved = res["vbf"]["hists"]["SR"]["mass"]
    assert type(saved) is hist.Hist and saved.folds == folds  # FoldHists are saved as plain hist.Hist
    # coffea and hist alone open the file: same values, variances and folds
    from test_outputs import load_without_flashsim

    found = load_without_flashsim(out, tmp_path)
    assert found and all(k.startswith(Path(files["vbf"]).stem + "/hists/") for k in found)
    for key, h in found.items():
        region, var = key.split("/")[-2:]
        mine = res["vbf"]["hists"][region][var]
        assert h["folds"] == folds
        np.testing.assert_array_equal(h["values"], mine.values(flow=True))
        np.testing.assert_array_equal(h["variances"], mine.variances(flow=True))


def test_default_sampling_threads():
    """--threads defaults to the usable cores with the iterative executor (one process does all
    the work) and to 1 per worker process otherwise."""
    import os

    from flashsim_coffea.runner import default_threads

    assert default_threads("futures") == default_threads("dask") == 1
    assert default_threads("iterative") == len(os.sched_getaffinity(0))
