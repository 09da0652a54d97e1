"""Inputs that lie: a FlashSim file given as a reference, NanoAOD counters that disagree with their
collections, an already folded file simulated again, duplicate event identities, one file under
two names, and model folders whose parts are broken or disagree. Each is refused with one line
naming the file and the value (or, where harmless, reported in one warning).

Inputs: slices of the bundled ``dy.root`` (2400 events) written into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import REPO, dy_arrays, dy_slice
from flashsim_coffea.cli import main
from flashsim_coffea.errors import UserError
from flashsim_coffea.nanoaod.io import _group

DY = REPO / "flashsim_coffea" / "samples" / "dy.root"
MODELS = REPO / "flashsim_coffea" / "models"


def _error_line(capsys) -> str:
    """The CLI's stderr: exactly one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


_arrays, _slice = dy_arrays, dy_slice


def _bad_counter(path, n: int = 200) -> int:
    """The first ``n`` events of dy.root with ``nGenJet`` one too high in one event and one too low
    in a later one (the GenJet_* branches keep their lengths, counted by their own counter
    ``nGenJet_entries``); returns the first entry where ``nGenJet`` is wrong."""
    grouped = _group(_arrays(n))
    true = np.asarray(ak.num(grouped["GenJet"]), dtype=np.int32)
    with_jets = np.flatnonzero(true > 0)
    bad = true.copy()
    bad[with_jets[1]] += 1
    bad[with_jets[4]] -= 1  # the total stays right: coffea would misalign silently
    grouped["nGenJet"] = bad
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in grouped.items()}
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", types, counter_name=lambda c: "nGenJet_entries" if c == "GenJet" else f"n{c}")
        tree.extend(grouped)
        f.mktree("Runs", {"run": np.uint32, "genEventCount": np.int64, "genEventSumw": np.float64,
                          "genEventSumw2": np.float64}).extend(
            {"run": np.array([1], np.uint32), "genEventCount": np.array([n], np.int64),
             "genEventSumw": np.array([float(n)]), "genEventSumw2": np.array([float(n)])})
    return int(with_jets[1])


def _duplicate(arrays) -> None:
    """Events 7 and 12 get the identity (run, luminosityBlock, event) of events 3 and 5."""
    ev = np.asarray(arrays["event"]).copy()
    ev[7], ev[12] = ev[3], ev[5]
    arrays["event"] = ev


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A 50-event slice of dy.root and its ``flashsim simulate`` outputs with 1 and 3 folds."""
    from flashsim_coffea.simulate_file import simulate_file

    folder = tmp_path_factory.mktemp("lying")
    src = _slice(folder / "dy50.root", 50)
    f1, f3 = folder / "f1.root", folder / "f3.root"
    simulate_file(src, f1, folds=1, progress=False)
    simulate_file(src, f3, folds=3, progress=False)
    return {"src": src, "f1": f1, "f3": f3}


# --------------------------------------------------------------------------- item 6
def test_flashsim_output_is_not_a_reference(simulated, tmp_path, capsys):
    """Issue item 6: closure, validate, efficiency and extract refuse a `flashsim simulate` output as
    their reference with one line naming the file, what wrote it and the file it came from; `run
    --mode fullsim` still analyses it."""
    f1 = str(simulated["f1"])
    (tmp_path / "model").mkdir()
    commands = {
        "closure": ["closure", f1, "-o", str(tmp_path / "c"), "--executor", "iterative", "--no-dnn", "--no-figures",
                    "--no-progress"],
        "validate": ["validate", "muons", f1, "-o", str(tmp_path / "v"), "--floor-draws", "1"],
        "efficiency": ["efficiency", "muons", f1, "-o", str(tmp_path / "model")],
        "extract": ["extract", "muons", f1, "-o", str(tmp_path / "x.npz"), "--no-progress"],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = _error_line(capsys)
        assert f"{f1} was written by flashsim simulate" in err and "Muon" in err and "Jet" in err, (name, err)
        assert "cannot be the reference" in err and "dy50.root" in err, (name, err)
    assert not (tmp_path / "model" / "efficiency.json").exists() and not (tmp_path / "x.npz").exists()
    assert main(["run", f1, "--mode", "fullsim", "--no-dnn", "-o", str(tmp_path / "f1.coffea")]) == 0
    assert (tmp_path / "f1.coffea").is_file()


# --------------------------------------------------------------------------- item 7
def test_counter_inconsistent_with_its_collection(tmp_path, capsys):
    """Issue item 7: `nGenJet` disagreeing with the GenJet_* branches is refused by run (flashsim and
    gen modes), simulate, closure and extract, naming the file, the counter and the first bad entry;
    a consistent file passes the same check."""
    from flashsim_coffea.closure import ClosureConfig, check_inputs
    from flashsim_coffea.simulate_file import simulate_file

    bad = tmp_path / "bad.root"
    entry = _bad_counter(bad)
    expected = f"{bad}: nGenJet disagrees with GenJet_pt"

    def named(err: str) -> None:
        assert expected in err and f"first at entry {entry}" in err, err

    for mode in ("flashsim", "gen"):
        assert main(["run", str(bad), "--mode", mode, "--no-dnn", "-o", str(tmp_path / f"{mode}.coffea")]) == 2
        named(_error_line(capsys))
    with pytest.raises(UserError) as err:
        simulate_file(bad, tmp_path / "sim.root", progress=False)
    named(str(err.value))
    assert not (tmp_path / "sim.root").exists()
    with pytest.raises(UserError) as err:
        check_inputs(ClosureConfig(ref=str(bad), output=str(tmp_path / "closure"), dnn=False))
    named(str(err.value))
    assert main(["extract", "jets", str(bad), "-o", str(tmp_path / "x.npz"), "--no-progress"]) == 2
    named(_error_line(capsys))
    from flashsim_coffea.nanoaod.io import check_counters

    check_counters(_slice(tmp_path / "good.root", 200), ["GenJet", "GenPart"])  # consistent: no error


# --------------------------------------------------------------------------- item 8
def test_folded_output_refused_in_flashsim_mode(simulated, tmp_path, capsys):
    """Issue item 8: `run --mode flashsim` on a `simulate --folds 3` output is refused (one line: folded
    ×3, what to run instead); `simulate` refuses it with the same check."""
    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.runner import run_processor
    from flashsim_coffea.simulate_file import simulate_file

    f3 = str(simulated["f3"])
    for folds in ("1", "2"):
        assert main(["run", f3, "--mode", "flashsim", "--folds", folds, "--no-dnn", "-o", str(tmp_path / "x.coffea")]) == 2
        err = _error_line(capsys)
        assert f"{f3} already has a 'fold' branch: folded ×3 by flashsim simulate" in err, err
        assert "run --mode fullsim on it, or flashsim mode on the file it was simulated from" in err, err
    with pytest.raises(UserError, match="folded ×3 by flashsim simulate"):
        run_processor({"f3": [f3]}, VBFHmmProcessor(mode="flashsim", dnn=False))
    with pytest.raises(UserError, match=r"already has a 'fold' branch: folded ×3 by flashsim simulate"):
        simulate_file(f3, tmp_path / "again.root", progress=False)
    assert not (tmp_path / "x.coffea").exists() and not (tmp_path / "again.root").exists()


# --------------------------------------------------------------------------- item 9
def test_duplicate_event_identities(tmp_path, capsys):
    """Issue item 9: duplicate (run, luminosityBlock, event) within a file are refused with folds > 1
    (run and simulate: one line naming the file, the first duplicate and how many) and reported in
    one warning with folds = 1."""
    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.runner import run_processor
    from flashsim_coffea.simulate_file import simulate_file

    dup = _slice(tmp_path / "hadded.root", 60, edit=_duplicate)
    said = f"{dup}: 2 events repeat an earlier (run, luminosityBlock, event), the first (1, 102, 4) at entry 7"
    assert main(["run", str(dup), "--mode", "flashsim", "--folds", "2", "--no-dnn", "-o", str(tmp_path / "x.coffea")]) == 2
    err = _error_line(capsys)
    assert said in err and "folds" in err, err
    with pytest.raises(UserError) as e:
        simulate_file(dup, tmp_path / "sim3.root", folds=3, progress=False)
    assert said in str(e.value)
    assert not (tmp_path / "x.coffea").exists() and not (tmp_path / "sim3.root").exists()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_processor({"d": [str(dup)]}, VBFHmmProcessor(mode="flashsim", dnn=False))
        simulate_file(dup, tmp_path / "sim1.root", folds=1, progress=False)
    assert out["d"]["expected_events"] == {str(dup): 60} and (tmp_path / "sim1.root").is_file()
    told = [str(w.message) for w in caught if said in str(w.message)]
    assert len(told) == 2, [str(w.message) for w in caught]  # one per call: run, simulate
    # fullsim reads each event's own reco: no check, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run_processor({"d": [str(dup)]}, VBFHmmProcessor(mode="fullsim", dnn=False))


# --------------------------------------------------------------------------- item 10
def test_one_file_under_two_names_counted_once(tmp_path, capsys, monkeypatch):
    """Issue item 10: a file given through a hard link (or a symbolic link) besides its own name is
    refused by run and simulate with one line naming both spellings."""
    from flashsim_coffea.runner import load_fileset
    from flashsim_coffea.simulate_file import simulate_file

    _slice(tmp_path / "a.root", 30)
    os.link(tmp_path / "a.root", tmp_path / "hard.root")
    (tmp_path / "soft.root").symlink_to(tmp_path / "a.root")
    monkeypatch.chdir(tmp_path)
    for other in ("hard.root", "soft.root"):
        assert main(["run", "a.root", other, "--mode", "fullsim", "--no-dnn", "-o", "x.coffea"]) == 2
        err = _error_line(capsys)
        assert "is given twice" in err and "'a.root'" in err and f"'{other}'" in err, err
        with pytest.raises(UserError, match="given twice") as e:
            simulate_file(["a.root", other], tmp_path / "sim.root", progress=False)
        assert "a.root" in str(e.value) and other in str(e.value)
    with pytest.raises(UserError, match=r"given twice in datasets 'one' and 'two' \(as 'a.root' and 'hard.root'\)"):
        (tmp_path / "fs.json").write_text(json.dumps({"one": ["a.root"], "two": ["hard.root"]}))
        load_fileset([str(tmp_path / "fs.json")])
    assert not (tmp_path / "x.coffea").exists() and not (tmp_path / "sim.root").exists()


# --------------------------------------------------------------------------- item 11
def _model_copy(tmp_path, name: str, folder: str | None = None):
    dst = tmp_path / (folder or name)
    shutil.copytree(MODELS / name, dst, ignore=shutil.ignore_patterns("validation"))
    return dst


def test_non_finite_weights_refused_at_load(tmp_path):
    """Issue item 11: a model whose weights hold NaN or inf is refused at load (FlowModel.load,
    load_bundle) with one line naming the folder and the first bad tensor."""
    from safetensors.torch import load_file

    from flashsim_coffea.flows.bundle import load_bundle
    from flashsim_coffea.flows.checkpoint import read_card, save_checkpoint
    from flashsim_coffea.flows.sampler import FlowModel

    for bad in (float("nan"), float("inf")):
        folder = _model_copy(tmp_path, "muons", f"muons_{bad}")
        card, _ = read_card(folder)
        state = load_file(str(folder / "model.safetensors"))
        name = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 3)[1]
        state[name].view(-1)[3] = bad
        save_checkpoint(folder, state, {k: v for k, v in card.items() if k not in ("weights", "weights_sha256")})
        for load in (FlowModel.load, load_bundle):
            with pytest.raises(UserError) as err:
                load(folder)
            msg = str(err.value)
            assert msg.startswith(f"{folder}: ") and f"weight tensor {name!r}" in msg and "\n" not in msg, msg
            assert "1 non-finite value" in msg, msg


def _refused_parts(tmp_path, model: str, filename: str, cases: dict) -> None:
    """Each case (name → (text of ``filename``, words the message must hold)) written into a copy of
    the shipped ``model`` folder is refused by load_bundle in one line that starts with the file
    and survives pickling (so it travels from a worker)."""
    from flashsim_coffea.flows.bundle import load_bundle

    for i, (case, (text, said)) in enumerate(cases.items()):
        folder = _model_copy(tmp_path, model, f"{model}{i}")
        (folder / filename).write_text(text)
        with pytest.raises(UserError) as err:
            load_bundle(folder)
        msg = str(err.value)
        assert msg.startswith(f"{folder / filename}: ") and said in msg and "\n" not in msg, (case, msg)
        assert str(pickle.loads(pickle.dumps(err.value))) == msg


def test_model_folder_parts_must_agree(tmp_path):
    """Issue item 11: load_bundle refuses an efficiency map or count model that is malformed (bad
    JSON, missing keys, wrong shapes, values out of range) or disagrees with the flow (spec name,
    the spec's efficiency binning, the count feature), with one line naming the file; the error
    survives pickling (worker processes)."""
    from flashsim_coffea.flows.bundle import load_bundle

    shipped = json.loads((MODELS / "muons" / "efficiency.json").read_text())

    def changed(**kw):
        return json.dumps({**shipped, **kw})

    values = np.asarray(shipped["values"])
    cases = {
        "bad JSON": ("{not json", "not valid JSON"),
        "missing key": (json.dumps({k: v for k, v in shipped.items() if k != "values"}), "'values'"),
        "other spec": (changed(spec="jets"), "spec 'jets'"),
        "other pt edges": (changed(pt_edges=[e * 2 for e in shipped["pt_edges"]]), "pt_edges"),
        "values above 1": (changed(values=(values + 0.5).tolist()), "in [0, 1]"),
        "NaN value": (changed(values=np.where(values == values.max(), np.nan, values).tolist()), "in [0, 1]"),
        "wrong shape": (changed(values=values[:-1].tolist()), "shape"),
    }
    _refused_parts(tmp_path, "muons", "efficiency.json", cases)

    count = json.loads((MODELS / "pileup_jets" / "count.json").read_text())
    ccases = {
        "bad JSON": ("[1, 2", "not a valid count model"),
        "missing key": (json.dumps({k: v for k, v in count.items() if k != "edges"}), "'edges'"),
        "other spec": (json.dumps({**count, "spec": "jets"}), "spec 'jets'"),
        "other feature": (json.dumps({**count, "feature": "Pileup_nTrue"}), "Pileup_nTrue"),
        "wrong shape": (json.dumps({**count, "probs": count["probs"][:-1]}), "shape"),
        "negative probability": (json.dumps({**count, "probs": [[-1.0] + r[1:] for r in count["probs"]]}), "probs"),
    }
    _refused_parts(tmp_path, "pileup_jets", "count.json", ccases)
    assert load_bundle(_model_copy(tmp_path, "muons", "muons_ok")).efficiency is not None  # the shipped parts agree
