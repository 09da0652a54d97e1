"""Resources and messages: bounded memory at any --folds, worker processes (how many, none left
behind on SIGTERM), one-line errors instead of tracebacks, messages that name what is wrong.

Inputs are slices of the bundled ``dy.root`` (2400 events) written into ``tmp_path``, and the real
CMS NanoAOD files of ``../shared/data/real-nanoaod`` where a test needs real data (skipped when absent).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import REPO, dy_slice, read_only_folder, real_file
from flashsim_coffea.cli import main
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.nanoaod.io import read_metadata

DY = REPO / "flashsim_coffea" / "samples" / "dy.root"
MUONS = REPO / "flashsim_coffea" / "models" / "muons"


# --------------------------------------------------------------------------- helpers
_slice = dy_slice


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _error_line(capsys) -> str:
    """The one line a failed command printed on stderr."""
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1, err
    return err[0]


def _all_branches(path) -> dict:
    with uproot.open(path) as f:
        return {t: f[t].arrays(library="ak", how=dict) for t in ("Events", "Runs")}


def _same_bits(a, b, what: str) -> None:
    assert ak.to_list(ak.num(a, axis=1)) == ak.to_list(ak.num(b, axis=1)) if a.ndim > 1 else len(a) == len(b), what
    fa, fb = ak.to_numpy(ak.flatten(a, axis=None)), ak.to_numpy(ak.flatten(b, axis=None))
    assert fa.dtype == fb.dtype and fa.tobytes() == fb.tobytes(), what


def _cli(*argv: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``flashsim ARGV`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "flashsim_coffea.cli", *argv], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**os.environ, **(env or {})}, timeout=timeout)


# =========================================================================== item 13: resources
@pytest.mark.slow
def test_simulate_folds_in_bounded_batches_bit_identical(tmp_path, monkeypatch):
    """Issue item 13 (a): simulate_file simulates the (event, fold) pairs of a chunk in event-major
    batches of at most MAX_BATCH_PAIRS pairs and writes each as it comes; the file equals the one
    written with all folds at once, branch by branch and bit for bit."""
    import flashsim_coffea.simulate_file as sf
    from flashsim_coffea.inject import PreparedChunk

    src = _slice(tmp_path / "in.root", 8)
    whole = tmp_path / "whole.root"
    sf.simulate_file(src, whole, folds=7, progress=False)

    sizes = []
    inject = PreparedChunk.inject

    def spy(self, batch, *args, **kw):
        sizes.append(len(batch))
        return inject(self, batch, *args, **kw)

    monkeypatch.setattr(PreparedChunk, "inject", spy)
    monkeypatch.setattr(sf, "MAX_BATCH_PAIRS", 20, raising=False)
    capped = tmp_path / "capped.root"
    sf.simulate_file(src, capped, folds=7, progress=False)
    assert sizes == [20, 20, 16]  # the 56 (event, fold) pairs, event-major, 20 at a time
    a, b = _all_branches(whole), _all_branches(capped)
    for tree in a:
        assert list(a[tree]) == list(b[tree])
        for k in a[tree]:
            _same_bits(a[tree][k], b[tree][k], f"{tree}/{k}")
    assert read_metadata(whole) == read_metadata(capped)


def test_simulate_refuses_absurd_folds_before_any_work(tmp_path, monkeypatch, capsys):
    """Issue item 13 (a): folds above MAX_FOLDS are refused in one line naming the output size,
    before anything is simulated or written."""
    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.simulate_file import simulate_file

    src = _slice(tmp_path / "in.root", 40)

    def no_work(*a, **kw):
        raise AssertionError("simulation started")

    monkeypatch.setattr(FlashSim, "prepare", no_work)
    out = tmp_path / "x.root"
    with pytest.raises(UserError) as err:
        simulate_file(src, out, folds=2_000_000, progress=False)
    msg = str(err.value)
    assert "2,000,000" in msg and "80,000,000 events" in msg and "in.root" in msg and "\n" not in msg, msg
    assert main(["simulate", str(src), "-o", str(out), "--folds", "2000000", "--no-progress"]) == 2
    assert "80,000,000 events" in _error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".x.root.*"))


def test_workers_capped_at_the_number_of_chunks(tmp_path, monkeypatch, capsys):
    """Issue item 13 (b): run_processor starts at most one worker per chunk and says so in one line."""
    import flashsim_coffea.runner.run as run_module
    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.runner import run_processor

    src = _slice(tmp_path / "in.root", 40)
    asked = []
    real = run_module.executor_session

    def session(executor, workers, *args, **kw):  # records the workers, runs in this process
        asked.append((executor, workers))
        return real("iterative", 1, *args, **kw)

    monkeypatch.setattr(run_module, "executor_session", session)
    proc = VBFHmmProcessor(mode="gen", dnn=False)
    with pytest.warns(UserWarning, match=r"1 worker process.*not 4.*1 chunk") as seen:
        out = run_processor({"d": [str(src)]}, proc, "futures", workers=4, chunksize=100_000)
    assert out["d"]["nevents"] == 40 and asked == [("futures", 1)] and len(seen) == 1
    asked.clear()
    run_processor({"d": [str(src)]}, proc, "futures", workers=3, chunksize=10)  # 4 chunks: not capped
    assert asked == [("futures", 3)]
    asked.clear()
    assert main(["run", str(src), "--mode", "gen", "--no-dnn", "--executor", "futures", "--workers", "4",
                 "-o", str(tmp_path / "o.coffea")]) == 0
    err = _lines(capsys.readouterr().err)
    assert asked == [("futures", 1)]
    assert len(err) == 1 and err[0].startswith("flashsim run: ") and "not 4" in err[0], err


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (psutil when installed, else the parent pids of /proc/*/stat)."""
    try:
        import psutil
    except ImportError:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [pid]
        while todo:
            kids = children.get(todo.pop(), [])
            out += kids
            todo += kids
        return out
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_leaves_no_worker_process(tmp_path):
    """Issue item 13 (c): SIGTERM to `flashsim run --executor futures` shuts its pool down: no
    worker (or other descendant) process survives the command."""
    shutil.copy(DY, tmp_path / "dy.root")
    log = open(tmp_path / "log.txt", "w+")
    p = subprocess.Popen([sys.executable, "-m", "flashsim_coffea.cli", "run", "dy.root", "--executor", "futures",
                          "--workers", "2", "--mode", "flashsim", "--chunksize", "100", "-o", "out.coffea"],
                         cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    kids: list[int] = []
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and p.poll() is None:
            kids = _descendants(p.pid)
            if len(kids) >= 3:  # two workers (and loky's resource tracker)
                break
            time.sleep(0.2)
        assert p.poll() is None and len(kids) >= 3, f"no workers started: {kids}"
        time.sleep(2)  # the workers are loading the models / processing chunks
        kids = sorted(set(kids) | set(_descendants(p.pid)))
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        survivors = [k for k in kids if _alive(k)]
        log.seek(0)
        assert not survivors, f"processes left behind: {survivors}\n{log.read()[-2000:]}"
        assert p.returncode != 0 and not (tmp_path / "out.coffea").exists()
    finally:
        if p.poll() is None:
            p.kill()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
        log.close()


# =========================================================================== item 14: one-line errors
def _corrupt_basket(src: Path, dst: Path, branch: str) -> Path:
    """Scramble the compressed payload of the first basket of ``branch``."""
    data = bytearray(src.read_bytes())
    br = uproot.open(src)["Events"][branch]
    seek, nbytes = int(br.member("fBasketSeek")[0]), int(br.member("fBasketBytes")[0])
    for i in range(seek + nbytes // 2, seek + nbytes - 4):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def test_corrupt_or_truncated_input_one_line(tmp_path, capsys):
    """Issue item 14: a truncated or corrupt input of `flashsim simulate` (and `efficiency`) is one
    line "FILE: cannot read (corrupt or truncated ROOT file?: ...)", exit status 2, no output."""
    src = _slice(tmp_path / "in.root", 400)
    cut = tmp_path / "cut.root"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 3])  # opens, its baskets are cut off
    bad = _corrupt_basket(src, tmp_path / "bad.root", "GenPart_pt")
    for path in (cut, bad):
        out = tmp_path / "x.root"
        assert main(["simulate", str(path), "-o", str(out), "--no-progress"]) == 2
        err = _error_line(capsys)
        assert f"{path}: cannot read (corrupt or truncated ROOT file?: " in err, err
        assert not out.exists() and not list(tmp_path.glob(".x.root.*"))
        (tmp_path / "m").mkdir(exist_ok=True)
        assert main(["efficiency", "muons", str(path), "-o", str(tmp_path / "m")]) == 2
        err = _error_line(capsys)
        assert f"{path}: cannot read (corrupt or truncated ROOT file?: " in err, err
        assert not (tmp_path / "m" / "efficiency.json").exists()


@pytest.mark.slow
def test_non_ascii_names_run_with_an_ascii_terminal(tmp_path):
    """Issue item 14: a non-ASCII file or dataset name runs (coffea's file hash, printing with an
    ASCII stdout: PYTHONIOENCODING=ascii), with the iterative and futures executors."""
    src = _slice(tmp_path / "dÿ.root", 40)
    env = {"PYTHONIOENCODING": "ascii"}
    r = _cli("run", src.name, "--mode", "gen", "--no-dnn", "-o", "a.coffea", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "d\\xff: 40 events" in r.stdout, r.stdout
    (tmp_path / "fs.json").write_text(json.dumps({"Zμμ": [src.name]}, ensure_ascii=False), encoding="utf-8")
    r = _cli("run", "fs.json", "--mode", "gen", "--no-dnn", "--executor", "futures", "--workers", "1", "-o", "b.coffea",
             env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "Z\\u03bc\\u03bc: 40 events" in r.stdout, r.stdout
    from coffea.util import load

    assert load(str(tmp_path / "b.coffea"))["Zμμ"]["nevents"] == 40


@pytest.mark.slow
def test_non_ascii_closure_with_an_ascii_terminal(tmp_path):
    """Issue item 14: `flashsim closure` on a non-ASCII path and dataset name with an ASCII stdout."""
    src = _slice(tmp_path / "Zμμ.root", 300)
    r = _cli("closure", src.name, "-o", "rep", "--dataset", "dÿ", "--executor", "iterative", "--no-figures",
             "--no-progress", "--no-dnn", env={"PYTHONIOENCODING": "ascii"}, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "report: rep/summary.md" in r.stdout
    assert json.loads((tmp_path / "rep" / "summary.json").read_text(encoding="utf-8"))["dataset"] == "dÿ"


def _edited_model(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "muons_edited"
    shutil.copytree(MUONS, folder)
    card = json.loads((folder / "card.json").read_text())
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("field, edit, shown", [
    ("architecture.hidden", lambda c: c["architecture"].update(hidden=10**6), "1000000"),
    ("n_targets", lambda c: c.update(n_targets="12"), "'12'"),
    ("architecture.tail_bound", lambda c: c["architecture"].update(tail_bound=float("nan")), "nan"),
    ("architecture.layers", lambda c: c["architecture"].update(layers=True), "True"),
])
def test_model_card_fields_validated(tmp_path, capsys, field, edit, shown):
    """Issue item 14: a model card's architecture and sizes are checked (types, sane ranges) when
    it is read, before a flow is built: one line naming the card, the field and its value."""
    from flashsim_coffea.flows.checkpoint import read_card

    model = _edited_model(tmp_path, edit)
    with pytest.raises(UserError) as err:
        read_card(model)
    msg = str(err.value)
    assert str(model / "card.json") in msg and f"{field} = {shown}" in msg and "\n" not in msg, msg
    if field != "architecture.hidden":  # the unchecked 10⁶ hidden features would take all memory
        src = _slice(tmp_path / "in.root", 20)
        out = tmp_path / "x.root"
        assert main(["simulate", str(src), "--muons-model", str(model), "-o", str(out), "--no-progress"]) == 2
        assert f"{field} = {shown}" in _error_line(capsys)
        assert not out.exists()


def test_validate_output_checked_before_sampling(tmp_path, capsys, monkeypatch):
    """Issue item 14: `flashsim validate -o` a file or an unwritable folder is refused before the
    model is loaded and sampled."""
    import flashsim_coffea.validation as validation
    from flashsim_coffea.flows.sampler import FlowModel

    def no_work(*a, **kw):
        raise AssertionError("sampling started")

    monkeypatch.setattr(validation, "run_validation", no_work)
    monkeypatch.setattr(FlowModel, "load", no_work)
    src = _slice(tmp_path / "in.root", 20)
    (tmp_path / "file").write_text("x")
    for out, said in ((tmp_path / "file", "is not a folder"), (Path("/proc/flashsim-report"), "/proc")):
        assert main(["validate", "muons", str(src), "-o", str(out)]) == 2
        err = _error_line(capsys)
        assert str(out) in err and said in err, err
    with read_only_folder(tmp_path) as ro:  # skipped as root: the /proc case above stands for it
        assert main(["validate", "muons", str(src), "-o", str(ro / "rep")]) == 2
        assert "not writable" in _error_line(capsys)


def test_efficiency_inputs_and_output_checked_first(tmp_path, capsys, monkeypatch):
    """Issue item 14: `flashsim efficiency` names a missing input, the Gen collections a file lacks
    (collision data), and refuses an unwritable model folder before measuring."""
    import flashsim_coffea.efficiency as efficiency

    (tmp_path / "m").mkdir()
    assert main(["efficiency", "muons", str(tmp_path / "missing.root"), "-o", str(tmp_path / "m")]) == 2
    assert f"{tmp_path / 'missing.root'}: no such file" in _error_line(capsys)
    no_gen = _slice(tmp_path / "data.root", 20, drop=("GenPart_", "GenJet_", "nGen"))
    with pytest.raises(MissingBranchesError) as err:
        efficiency.measure_files("muons", [str(no_gen)])
    assert err.value.filename == str(no_gen) and "GenPart_pt" in err.value.missing
    assert main(["efficiency", "jets", str(no_gen), "-o", str(tmp_path / "m")]) == 2
    err = _error_line(capsys)
    assert str(no_gen) in err and "GenJet_pt" in err and "collision data" in err, err
    measured = []
    monkeypatch.setattr(efficiency, "measure_files", lambda *a, **kw: measured.append(a))
    src = _slice(tmp_path / "in.root", 20)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", Path("/proc/self/fdinfo")):
        assert main(["efficiency", "muons", str(src), "-o", str(out)]) == 2
        assert str(out) in _error_line(capsys)
    assert measured == []


# =========================================================================== item 15: messages
def test_wrong_tree_name_is_named(tmp_path, capsys):
    """Issue item 15: a tree that is not in the file: "FILE has no tree 'X' (trees: Events, Runs, …)"."""
    src = _slice(tmp_path / "in.root", 20)
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"d": {"files": [str(src)], "treename": "X"}}))
    assert main(["run", str(fs), "--mode", "gen", "--no-dnn", "-o", str(tmp_path / "o.coffea")]) == 2
    err = _error_line(capsys)
    assert f"{src} has no tree 'X' (trees: Events, Runs" in err and "cannot open" not in err, err


@pytest.mark.parametrize("command", [["simulate"], ["efficiency", "muons"], ["resimulate", "--seed", "3"]])
@pytest.mark.parametrize("given", ["*.root", "root://eosuser.cern.ch//eos/x.root", "in[12].root"])
def test_globs_and_urls_refused(tmp_path, capsys, monkeypatch, command, given):
    """Issue item 15: a glob left to the program or a remote URL given to a command that reads local
    files: one line saying so, not a mangled path."""
    monkeypatch.chdir(tmp_path)
    _slice(tmp_path / "in1.root", 5)
    assert main([*command, given, "-o", "out.root"]) == 2
    err = _error_line(capsys)
    assert (f"remote files and globs are not supported by flashsim {command[0]}: give local paths "
            "(the shell expands globs)") in err and given in err, err


def test_missing_gen_collection_is_named(tmp_path, capsys):
    """Issue item 15: GenPart without GenJet names the missing collection (not "collision data?");
    a file without any Gen collection is taken for collision data."""
    no_genjet = _slice(tmp_path / "nogj.root", 20, drop=("GenJet_", "nGenJet"))
    assert main(["simulate", str(no_genjet), "-o", str(tmp_path / "x.root"), "--no-progress"]) == 2
    err = _error_line(capsys)
    assert "GenJet_pt" in err and "no GenJet collection" in err and "collision data" not in err, err
    no_gen = _slice(tmp_path / "nogen.root", 20, drop=("GenPart_", "GenJet_", "nGen"))
    assert main(["simulate", str(no_gen), "-o", str(tmp_path / "x.root"), "--no-progress"]) == 2
    assert "collision data" in _error_line(capsys)


def test_weights_that_do_not_fit_the_card_one_line(tmp_path, capsys):
    """Issue item 15: weights of another architecture than the card's: one line (how many tensors
    do not fit, the first of them), not one line per tensor."""
    model = _edited_model(tmp_path, lambda c: c["architecture"].update(hidden=64))
    src = _slice(tmp_path / "in.root", 20)
    assert main(["simulate", str(src), "--muons-model", str(model), "-o", str(tmp_path / "x.root"),
                 "--no-progress"]) == 2
    err = _error_line(capsys)
    assert "weights do not fit the card's architecture" in err and "size mismatch" in err and len(err) < 600, err


def test_closure_refuses_too_few_events(tmp_path, capsys):
    """Issue item 15: a closure on fewer events than it needs (MIN_EVENTS) is refused before any
    work, in one line naming the file and the numbers."""
    from flashsim_coffea import closure
    from flashsim_coffea.closure import ClosureConfig, run_closure

    min_events = getattr(closure, "MIN_EVENTS", 200)
    src = _slice(tmp_path / "in.root", 40)
    with pytest.raises(UserError) as err:
        run_closure(ClosureConfig(ref=src, output=tmp_path / "rep", executor="iterative", progress=False,
                                  figures=False))
    msg = str(err.value)
    assert str(src) in msg and "40 events" in msg and f"at least {min_events}" in msg and "\n" not in msg, msg
    assert not (tmp_path / "rep").exists()
    path = real_file("nano_dy.root")
    assert main(["closure", str(path), "-o", str(tmp_path / "rep"), "--executor", "iterative", "--no-progress"]) == 2
    assert "40 events" in _error_line(capsys)


@pytest.mark.slow
def test_closure_refuses_samples_without_histogram_entries(tmp_path):
    """Issue item 15: a closure whose reference fills no histogram (no event passes the
    preselection) is refused, naming the file, instead of a report of NaNs."""
    from flashsim_coffea.closure import ClosureConfig, run_closure

    path = real_file("nano_tt_v12.root")  # 200 tt̄ events, no dimuon event
    with pytest.raises(UserError, match=r"nano_tt_v12\.root.*no histogram.*entries"):
        run_closure(ClosureConfig(ref=path, output=tmp_path / "rep", executor="iterative", progress=False,
                                  figures=False, dnn=False))


def test_nonfinite_gen_pt_is_counted_as_nonfinite(tmp_path):
    """Issue item 15: a Gen muon with pT = NaN is counted as non-finite, not as outside the
    acceptance; every other object is simulated bit for bit as before."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from flashsim_coffea.folds import FoldBatch
    from flashsim_coffea.inject import FlashSim

    def nan_muon(arrays):
        pdg, status = arrays["GenPart_pdgId"], arrays["GenPart_status"]
        muons = (abs(pdg) == 13) & (status == 1)
        first = int(np.flatnonzero(ak.to_numpy(ak.any(muons, axis=1)))[0])
        flat = ak.to_numpy(ak.flatten(arrays["GenPart_pt"])).copy()
        offset = int(ak.sum(ak.num(pdg[:first])))
        flat[offset + int(np.flatnonzero(ak.to_numpy(muons[first]))[0])] = np.nan
        arrays["GenPart_pt"] = ak.unflatten(flat, ak.num(pdg))
        nan_muon.event = first

    clean = _slice(tmp_path / "clean.root", 40)
    edited = _slice(tmp_path / "nan.root", 40, edit=nan_muon)

    def simulate(path):
        events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
        chunk = FlashSim(jets=False, pileup_jets=False).prepare(events)
        return chunk.simulate("Muon", FoldBatch.all_folds(len(events))), chunk.info["Muon"]

    (m0, info0), (m1, info1) = simulate(clean), simulate(edited)
    assert info1["n_gen_nonfinite"] == info0["n_gen_nonfinite"] + 1
    assert info1["n_gen_outside_acceptance"] in (info0["n_gen_outside_acceptance"],
                                                 info0["n_gen_outside_acceptance"] - 1)
    assert info1["n_gen"] == info0["n_gen"]
    others = np.arange(40) != nan_muon.event
    for f in ("pt", "eta", "phi", "genPartIdx"):
        _same_bits(m0[others][f], m1[others][f], f)
