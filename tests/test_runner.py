"""``flashsim_coffea.runner`` and ``flashsim run``: nothing lost on bad input (outputs never
overwrite inputs or each other, duplicates refused, output location checked before any work,
unreadable baskets one clear line, skipped-everything still reported, a killed futures worker
retried), the cross-reference warnings filtered, normalisation to a luminosity, driver-side DNN
checks, and a dask-jobqueue cluster giving the same histograms as the iterative executor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from conftest import assert_same_output, run_fileset as _fileset  # fixtures files, reference: conftest
from flashsim_coffea import runner
from flashsim_coffea.cli import main
from flashsim_coffea.errors import UserError
from flashsim_coffea.runner import load_fileset, run_processor
from flashsim_coffea.processors import VBFHmmProcessor
from flashsim_coffea.safe_write import _umask

REPO = Path(__file__).resolve().parents[1]
DY = REPO / "flashsim_coffea" / "samples" / "dy.root"


def _error_line(capsys) -> str:
    """The CLI's stderr, which must be exactly one line."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the CLI starts running the processor."""

    def refuse(*args, **kw):
        raise AssertionError("the processor ran although the command had to stop before any work")

    monkeypatch.setattr(runner, "run_processor", refuse)


# --------------------------------------------------------------------------- outputs
def test_output_never_overwrites_an_input(files, tmp_path, capsys, monkeypatch, no_work):
    src = tmp_path / "a.root"
    shutil.copy(files["ewk"], src)
    before = src.read_bytes()
    for out_flag in (["-o", str(src)], ["-o", str(tmp_path / "x.coffea"), "--root", str(src)]):
        for force in ([], ["--force"]):
            assert main(["run", str(src), "--mode", "fullsim", *out_flag, *force]) == 2
            assert "is an input file" in _error_line(capsys)
    # the fileset JSON is an input too, and relative spellings are the same file
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"a": ["a.root"]}))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "fs.json", "-o", "./fs.json", "--force"]) == 2
    assert "fs.json is an input file" in _error_line(capsys)
    assert main(["run", "fs.json", "-o", "sub/../a.root", "--force"]) == 2
    assert "is an input file" in _error_line(capsys)
    assert src.read_bytes() == before


def test_outputs_never_overwrite_each_other_and_need_force(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.coffea"
    assert main(["run", files["ewk"], "-o", str(out), "--root", str(out)]) == 2
    assert "-o and --root are the same file" in _error_line(capsys)
    out.write_text("mine")
    assert main(["run", files["ewk"], "-o", str(out)]) == 2
    assert "already exists; use --force" in _error_line(capsys)
    root = tmp_path / "h.root"
    root.write_text("mine")
    assert main(["run", files["ewk"], "-o", str(tmp_path / "new.coffea"), "--root", str(root)]) == 2
    assert "--root" in _error_line(capsys) and root.read_text() == "mine"
    assert main(["run", files["ewk"], "--no-dnn", "-o", str(out), "--root", str(root), "--force"]) == 0
    from coffea.util import load

    assert load(str(out))[Path(files["ewk"]).stem]["nevents"] == 120
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert (root.stat().st_mode & 0o777) == (0o666 & ~_umask())  # the rename keeps the usual permissions
    with uproot.open(root) as f:
        assert f"{Path(files['ewk']).stem}/SR/mass" in f


def test_output_location_checked_before_any_work(files, tmp_path, capsys, no_work):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    cases = {
        str(tmp_path): "is a folder",
        str(blocker / "out.coffea"): "is a file, not a folder",
        str(tmp_path / "missing" / "out.coffea"): "does not exist",
        "/proc/flashsim-out.coffea": "not writable",
    }
    for path, message in cases.items():
        assert main(["run", files["ewk"], "-o", path]) == 2
        assert message in _error_line(capsys), path
        assert main(["run", files["ewk"], "-o", str(tmp_path / "ok.coffea"), "--root", path]) == 2
        assert message in _error_line(capsys), path
    assert not (tmp_path / "ok.coffea").exists()


# --------------------------------------------------------------------------- inputs
def test_duplicate_inputs_refused(files, tmp_path, capsys, monkeypatch, no_work):
    (tmp_path / "in").mkdir()
    shutil.copy(files["ewk"], tmp_path / "in" / "a.root")
    (tmp_path / "link.root").symlink_to(tmp_path / "in" / "a.root")
    monkeypatch.chdir(tmp_path)
    for inputs in (["in/a.root", "./in/a.root"], ["in/a.root", "link.root"], ["in/a.root", "in/../in/a.root"]):
        assert main(["run", *inputs, "-o", "x.coffea"]) == 2
        err = _error_line(capsys)
        assert "in/a.root is given twice" in err and "counted twice" in err, err
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"one": ["in/a.root"], "two": {"files": ["./in/a.root"]}}))
    with pytest.raises(UserError, match="given twice in datasets 'one' and 'two'"):
        load_fileset([str(fs)])
    with pytest.raises(UserError, match="given twice"):  # the Python API checks too
        run_processor({"d": [str(tmp_path / "in/a.root"), "in/a.root"]}, VBFHmmProcessor(mode="fullsim"))


def test_unreadable_baskets_one_clear_line_and_skip_reports(tmp_path, capsys):
    """A file that opens but whose baskets are cut off: the same one-line message as an
    unopenable file; with --skip-bad-files and no good chunk left, an output reporting the skip."""
    bad = tmp_path / "t.root"
    data = DY.read_bytes()
    bad.write_bytes(data[: len(data) // 4])  # the tree's header is at the start: the baskets are cut off
    with uproot.open(bad) as f:  # it does open
        n = f["Events"].num_entries
    assert n > 0
    out = tmp_path / "x.coffea"
    assert main(["run", str(bad), "--mode", "fullsim", "--no-dnn", "-o", str(out)]) == 2
    err = _error_line(capsys)
    assert str(bad) in err and "use --skip-bad-files" in err and f"entries 0-{n}" in err
    assert not out.exists()
    assert main(["run", str(bad), "--mode", "fullsim", "--no-dnn", "--skip-bad-files", "-o", str(out)]) == 0
    assert f"skipped {bad}: {n} events not processed" in capsys.readouterr().out
    from coffea.util import load

    res = load(str(out))["t"]
    assert res["nevents"] == 0 and res["skipped"] == {str(bad): n} and res["expected_events"] == {str(bad): n}
    # the futures executor: same message, same report
    proc = VBFHmmProcessor(mode="fullsim", dnn=False)
    with pytest.raises(UserError, match=rf"t\.root \(entries 0-{n} of Events\): cannot read its data.*--skip-bad-files"):
        run_processor({"t": [str(bad)]}, proc, "futures", workers=1)
    res = run_processor({"t": [str(bad)]}, proc, "futures", workers=1, skip_bad_files=True)["t"]
    assert res["skipped"] == {str(bad): n} and res["nevents"] == 0


# --------------------------------------------------------------------------- futures worker death
class _KillsItsWorker(VBFHmmProcessor):
    """Kills its worker process (never the test's) on the chunk starting at entry 0 of the file,
    the first ``times`` times (counted with marker files)."""

    def __init__(self, marker_dir: str, times: int, driver_pid: int, **kw):
        super().__init__(**kw)
        self.marker_dir, self.times, self.driver_pid = marker_dir, times, driver_pid

    def process(self, events):
        if events.metadata.get("entrystart") == 0 and os.getpid() != self.driver_pid:
            done = len(list(Path(self.marker_dir).iterdir()))
            if done < self.times:
                (Path(self.marker_dir) / f"killed-{done}").write_text(str(os.getpid()))
                os._exit(1)
        return super().process(events)


def test_futures_worker_killed_once_is_retried(files, reference, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _KillsItsWorker(str(markers), 1, os.getpid(), mode="fullsim")
    with pytest.warns(RuntimeWarning, match="worker process died"):
        out = run_processor(_fileset(files), proc, "futures", workers=2, chunksize=50)
    assert len(list(markers.iterdir())) == 1  # a worker really died
    assert_same_output(reference, out)


def test_futures_worker_always_killed_names_the_chunk(files, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _KillsItsWorker(str(markers), 99, os.getpid(), mode="fullsim", dnn=False)
    fileset = {"ewk": [files["ewk"]]}
    with pytest.warns(RuntimeWarning), pytest.raises(UserError) as err:
        run_processor(fileset, proc, "futures", workers=1, chunksize=60, worker_retries=1)
    message = str(err.value)
    assert f"died while processing {files['ewk']} (entries 0-60 of Events), also when it ran alone" in message
    assert "entries 60-120" not in message and "--chunksize" in message


# --------------------------------------------------------------------------- warnings
def test_crossref_warnings_filtered_in_workers_and_cli(files, tmp_path, capfd):
    out = run_processor({"ewk": [files["ewk"]]}, VBFHmmProcessor(mode="gen", dnn=False), "futures", workers=1)
    assert out["ewk"]["nevents"] == 120
    assert "Missing cross-reference" not in capfd.readouterr().err
    # the command line in a fresh interpreter (no pytest warning filters), iterative executor
    code = "import sys; from flashsim_coffea.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "run", files["ewk"], "--mode", "gen", "--no-dnn",
                           "-o", str(tmp_path / "g.coffea")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Missing cross-reference" not in proc.stderr
    # the filter is exactly that warning
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runner.ignore_crossref_warnings()
        warnings.warn("Missing cross-reference index for FsrPhoton_muonIdx => Muon", RuntimeWarning)
        warnings.warn("Missing cross-reference target for FatJet_subJetIdx1 => SubJet", RuntimeWarning)  # real Run-3 files
        warnings.warn("FlashSim: something else", RuntimeWarning)
    assert [str(w.message) for w in seen] == ["FlashSim: something else"]


# --------------------------------------------------------------------------- driver-side checks
def test_dnn_model_checked_on_the_driver(files, tmp_path, capsys):
    jets = REPO / "flashsim_coffea" / "models" / "jets"
    assert main(["run", files["ewk"], "--dnn-model", str(jets), "-o", str(tmp_path / "x.coffea")]) == 2
    err = _error_line(capsys)
    assert "not a VBF H->mumu DNN" in err and "KeyError" not in err
    broken = tmp_path / "dnn"
    shutil.copytree(REPO / "flashsim_coffea" / "models" / "dnn", broken)
    (broken / "card.json").write_text('{"format": "flashsim-coffea VBF H->mumu DNN v1", "inputs": [')
    assert main(["run", files["ewk"], "--dnn-model", str(broken), "-o", str(tmp_path / "x.coffea")]) == 2
    assert "card.json" in _error_line(capsys)


def test_run_processor_checks_the_processor_first(files):
    calls = []

    class Probe(VBFHmmProcessor):
        def check(self):
            calls.append("check")
            raise UserError("bad model card")

        def missing_branches(self, available):
            calls.append("branches")
            return []

    with pytest.raises(UserError, match="bad model card"):
        run_processor({"ewk": [files["ewk"]]}, Probe(mode="fullsim"))
    assert calls == ["check"]


def test_a_plain_coffea_processor_runs(files, tmp_path):
    """A user's ProcessorABC without the optional interface (flashsim_coffea/runner/interface.py):
    nothing checked, no branches required, ``{}`` for a dataset without chunks."""
    from coffea import processor

    from flashsim_coffea.runner import FlashSimProcessor, processor_interface

    class Plain(processor.ProcessorABC):
        def process(self, events):
            return {events.metadata["dataset"]: {"n": len(events)}}

        def postprocess(self, accumulator):
            return accumulator

    proc = Plain()
    assert not isinstance(proc, FlashSimProcessor) and isinstance(VBFHmmProcessor(mode="gen"), FlashSimProcessor)
    view = processor_interface(proc)
    assert view.check() is None and view.missing_branches({"Muon_pt"}) == [] and view.empty_output() == {}
    empty = _no_xsec_file(tmp_path / "empty.root")
    out = run_processor({"ewk": [files["ewk"]], "none": [empty]}, proc)
    assert out["ewk"]["n"] == 120 and out["ewk"]["expected_events"] == {files["ewk"]: 120}
    assert out["none"]["chunks"] == 0 and out["none"]["empty_files"] == [empty]


# --------------------------------------------------------------------------- normalisation
def _runs(path: str) -> tuple[float, float]:
    with uproot.open(path) as f:
        r = f["Runs"].arrays(["genEventSumw", "XSecPb"], library="np")
    return float(r["genEventSumw"].sum()), float(r["XSecPb"][0])


class _MetaProbe(VBFHmmProcessor):
    """Records the fileset metadata the events carry."""

    def process(self, events):
        out = super().process(events)
        for res in out.values():
            res["seen_meta"] = {(k, str(events.metadata.get(k))) for k in ("tag", "xsec", "norm_weight")}
        return out


def test_lumi_normalisation(files, reference, tmp_path, capsys):
    lumi = 300.0
    out = run_processor(_fileset(files), VBFHmmProcessor(mode="fullsim"), "iterative", chunksize=1000, lumi=lumi)
    for ds in ("vbf", "ewk"):
        sumw, xsec = _runs(files[ds])
        norm = out[ds]["normalisation"]
        assert norm["xsec_pb"] == xsec and norm["sumw_runs"] == sumw and norm["lumi_fb"] == lumi
        assert norm["norm_weight"] == pytest.approx(xsec * lumi * 1000 / sumw, rel=1e-12)
        assert out[ds]["sumw"] == pytest.approx(reference[ds]["sumw"] * norm["norm_weight"], rel=1e-9)
        assert out[ds]["sumw"] == pytest.approx(xsec * lumi * 1000, rel=1e-6)  # all events read: σ·L
        for region, hs in out[ds]["hists"].items():
            np.testing.assert_allclose(hs["mass"].values(flow=True),
                                       reference[ds]["hists"][region]["mass"].values(flow=True) * norm["norm_weight"],
                                       rtol=1e-9)
        assert out[ds]["cutflow"] == reference[ds]["cutflow"]  # entries, not weights

    # metadata xsec wins over Runs/XSecPb; Σw over all files of the dataset; metadata reaches events.metadata
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"both": {"files": [files["vbf"], files["ewk"]], "metadata": {"xsec": 2.0, "tag": "t1"}}}))
    res = run_processor(load_fileset([str(fs)]), _MetaProbe(mode="fullsim", dnn=False), lumi=10)["both"]
    total = _runs(files["vbf"])[0] + _runs(files["ewk"])[0]
    assert res["normalisation"]["sumw_runs"] == pytest.approx(total, rel=1e-12)
    assert res["normalisation"]["norm_weight"] == pytest.approx(2.0 * 10 * 1000 / total, rel=1e-12)
    assert res["seen_meta"] == {("tag", "t1"), ("xsec", "2.0"), ("norm_weight", str(res["normalisation"]["norm_weight"]))}
    # unnormalised runs keep the metadata too, without a norm_weight
    res = run_processor(load_fileset([str(fs)]), _MetaProbe(mode="fullsim", dnn=False))["both"]
    assert "normalisation" not in res and ("norm_weight", "None") in res["seen_meta"] and ("tag", "t1") in res["seen_meta"]

    # the command line prints the expected events per region
    assert main(["run", files["vbf"], "--lumi", "300", "--no-dnn", "-o", str(tmp_path / "n.coffea")]) == 0
    text = capsys.readouterr().out
    assert "expected events for L = 300 fb^-1" in text and "presel" in text and "SR" in text and "SB" in text
    assert main(["run", files["vbf"], "--lumi", "-1", "-o", str(tmp_path / "m.coffea")]) == 2
    assert "--lumi must be a positive" in _error_line(capsys)


def _no_xsec_file(dst: Path) -> str:
    """No events (nothing to process), a Runs tree with genEventSumw = 1 but no XSecPb (as real NanoAOD)."""
    with uproot.recreate(dst) as f:
        f.mktree("Events", {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64, "genWeight": np.float32})
        f["Events"].extend({"run": np.zeros(0, np.uint32), "luminosityBlock": np.zeros(0, np.uint32),
                            "event": np.zeros(0, np.uint64), "genWeight": np.zeros(0, np.float32)})  # fmt: skip
        f.mktree("Runs", {"run": np.uint32, "genEventSumw": np.float64})
        f["Runs"].extend({"run": np.ones(1, np.uint32), "genEventSumw": np.ones(1)})
    return str(dst)


def test_normalisation_errors_name_the_dataset(files, tmp_path):
    nox = _no_xsec_file(tmp_path / "nox.root")
    proc = VBFHmmProcessor(mode="gen", dnn=False)
    with pytest.raises(UserError, match=r"dataset 'real' has no cross section.*\"xsec\""):
        run_processor({"real": [nox]}, proc, lumi=1.0)
    out = run_processor({"real": {"files": [nox], "metadata": {"xsec": 5.0}}}, proc, lumi=2.0)["real"]
    assert out["normalisation"]["norm_weight"] == pytest.approx(5.0 * 2.0 * 1000 / 1.0)
    assert out["empty_files"] == [nox] and out["nevents"] == 0 and out["skipped"] == {}  # only an empty file: no crash
    with pytest.raises(UserError, match=r"dataset 'mix': its files give different cross sections"):
        run_processor({"mix": [files["vbf"], files["ewk"]]}, proc, lumi=1.0)
    with pytest.raises(UserError, match="metadata xsec"):
        run_processor({"real": {"files": [nox], "metadata": {"xsec": "many"}}}, proc, lumi=1.0)
    with pytest.raises(UserError, match="--lumi"):
        run_processor({"real": [nox]}, proc, lumi=float("nan"))


# --------------------------------------------------------------------------- dask-jobqueue
def test_dask_jobqueue_cluster_identical(files, reference, tmp_path):
    """A dask-jobqueue cluster whose jobs are local processes (dask_jobqueue.LocalCluster), given
    to the Python API as a cluster object and to the command line as --scheduler ADDRESS: the
    same histograms as the iterative executor."""
    jobqueue_local = pytest.importorskip("dask_jobqueue.local")
    from coffea.util import load

    cluster = jobqueue_local.LocalCluster(cores=1, processes=1, memory="2GB", log_directory=str(tmp_path / "logs"),
                                         scheduler_options={"host": "127.0.0.1"})
    try:
        cluster.scale(jobs=2)
        out = run_processor(_fileset(files), VBFHmmProcessor(mode="fullsim"), cluster, chunksize=50)
        assert_same_output(reference, out)
        fs = tmp_path / "fs.json"
        fs.write_text(json.dumps({"vbf": [files["vbf"]], "ewk": [files["ewk"]]}))
        res = tmp_path / "jq.coffea"
        assert main(["run", str(fs), "--executor", "dask", "--scheduler", cluster.scheduler_address,
                     "--chunksize", "64", "-o", str(res)]) == 0
        assert_same_output(reference, load(str(res)))
    finally:
        cluster.close()
