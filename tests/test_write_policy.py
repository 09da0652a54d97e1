"""Every command that writes: its outputs are checked before any work, are never an input (any
spelling, symbolic or hard link), are written under an unpredictable temporary name beside the
target and renamed when complete, are cleaned up on SIGTERM/SIGINT, need ``--force`` to replace
an existing output, and ``--force`` replaces only what the command itself writes. Two commands
writing one output at once: the second fails at once (a lock file beside the output).

The tests run the ``flashsim`` command line (in this process, or as a subprocess where a signal
is sent) on slices of the bundled DY sample; the package is imported inside the tests.
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

import pytest

REPO = Path(__file__).resolve().parents[1]
DY = REPO / "flashsim_coffea" / "samples" / "dy.root"
MODELS = REPO / "flashsim_coffea" / "models"
CLI = "import sys; from flashsim_coffea.cli import main; sys.exit(main(sys.argv[1:]))"


# --------------------------------------------------------------------------- helpers
def _cli(capsys, *argv) -> tuple[int, str, str]:
    """``flashsim ARGV`` in this process: (exit code, stdout, stderr)."""
    from flashsim_coffea.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as err:  # argparse
        rc = err.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    text = err.strip()
    assert text and "\n" not in text and "Traceback" not in text, err
    return text


def _slice(dst: Path, stop: int) -> Path:
    """The first ``stop`` events of the bundled DY sample (Events, Runs and metadata) in ``dst``."""
    import uproot

    from flashsim_coffea.nanoaod.io import NanoAODWriter, is_counter, read_metadata

    tree = uproot.open(DY)["Events"]
    names = [n for n in tree.keys() if not is_counter(n, tree.keys())]
    writer = NanoAODWriter(dst)
    writer.extend(tree.arrays(names, entry_stop=stop, how=dict))
    writer.close(metadata=read_metadata(DY))
    return dst


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """200 DY events (a read-only source: copy it before writing beside it)."""
    return _slice(tmp_path_factory.mktemp("write_policy") / "small.root", 200)


def _copy_model(name: str, dst: Path) -> Path:
    """A copy of the shipped ``name`` model folder (card, weights, maps; no validation report)."""
    dst.mkdir()
    for f in (MODELS / name).iterdir():
        if f.is_file():
            shutil.copy(f, dst / f.name)
    return dst


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path → bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _live_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _spawn(*argv, cwd=REPO, **kw) -> subprocess.Popen:
    """``flashsim ARGV`` as a subprocess (the package of this checkout: run from its root)."""
    return subprocess.Popen([sys.executable, "-c", CLI, *map(str, argv)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll ``predicate`` every 20 ms until it is true, ``proc`` ends or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------------------- item 1
def test_resimulate_refuses_a_hard_link_to_its_input(tmp_path, capsys):
    """Issue item 1: ``resimulate in.root -o hl.root --force`` with hl.root a hard link to in.root is
    refused with one line naming the output; in.root is unchanged and no temporary file is left."""
    src = tmp_path / "in.root"
    shutil.copy(DY, src)
    before = src.read_bytes()
    link = tmp_path / "hl.root"
    os.link(src, link)
    rc, _, err = _cli(capsys, "resimulate", src, "-o", link, "--seed", 5, "--force", "--no-progress")
    assert rc == 2
    line = _one_line_error(err)
    assert str(link) in line and "input" in line
    assert src.read_bytes() == before and link.stat().st_ino == src.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hl.root", "in.root"]


# --------------------------------------------------------------------------- item 2
@pytest.mark.slow
def test_term_during_generate_keeps_the_old_output(tmp_path):
    """Issue item 2: SIGTERM during ``generate dy -n 3000 -o g.root --force`` leaves the old g.root
    as it was and no temporary file (the events go to a temporary file renamed when complete)."""
    out = tmp_path / "g.root"
    out.write_bytes(b"the old g.root\n" * 1000)
    old = out.read_bytes()

    def started() -> bool:  # the temporary file exists, or g.root itself was touched
        return any(p.name != "g.root" for p in tmp_path.iterdir()) or out.read_bytes() != old

    proc = _spawn("generate", "dy", "-n", 3000, "--seed", 3, "-o", out, "--force", "--no-progress")
    try:
        _wait_for(started, proc, timeout=60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGTERM
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.root"]


def _recreated_paths(monkeypatch) -> list[str]:
    """The paths uproot.recreate is called with from now on (the files a command really writes)."""
    import uproot

    opened: list[str] = []
    recreate = uproot.recreate

    def spy(path, *a, **kw):
        opened.append(str(path))
        return recreate(path, *a, **kw)

    monkeypatch.setattr(uproot, "recreate", spy)
    return opened


def test_resimulate_writes_a_temporary_file_renamed_when_complete(tmp_path, capsys, monkeypatch, small):
    """Issue item 2: ``resimulate`` writes its events to a temporary file beside the output, not
    predictable from the output's name or the PID, and renames it when complete; a failure during
    the write leaves the old output as it was and no temporary file."""
    import uproot

    src = tmp_path / "in.root"
    shutil.copy(small, src)
    out = tmp_path / "out.root"
    out.write_bytes(b"old output")
    opened = _recreated_paths(monkeypatch)
    import flashsim_coffea.reference as reference

    def broken(*a, **kw):
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(reference, "respond", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            _cli(capsys, "resimulate", src, "-o", out, "--seed", 5, "--force", "--no-progress")
    assert out.read_bytes() == b"old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.root", "out.root"]
    rc, _, _ = _cli(capsys, "resimulate", src, "-o", out, "--seed", 5, "--force", "--no-progress")
    assert rc == 0 and uproot.open(out)["Events"].num_entries == 200
    tmp = Path(opened[-1])
    assert tmp.parent == tmp_path and tmp.name != out.name and tmp.name.startswith(".")
    assert str(os.getpid()) not in tmp.name and opened[0] != opened[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.root", "out.root"]


# --------------------------------------------------------------------------- item 3
def test_validate_refuses_a_non_empty_report_folder_without_force(tmp_path, capsys, small):
    """Issue item 3: ``validate muons FILE -o u`` refuses a non-empty u without ``--force`` before any
    work (one line naming u); with ``--force`` the folder check passes (here the missing model is
    the next error) and the user's file is left alone."""
    report = tmp_path / "u"
    report.mkdir()
    (report / "notes.txt").write_text("mine")
    rc, _, err = _cli(capsys, "validate", "muons", small, "-o", report, "--max-events", 50, "--floor-draws", 1)
    assert rc == 2
    line = _one_line_error(err)
    assert str(report) in line and "--force" in line and "not empty" in line
    assert _tree_bytes(report) == {"notes.txt": b"mine"}
    rc, _, err = _cli(capsys, "validate", "muons", small, "-o", report, "--force", "--model", tmp_path / "no-such-model",
                      "--max-events", 50, "--floor-draws", 1)
    assert rc == 2 and "no-such-model" in _one_line_error(err) and "not empty" not in err
    assert _tree_bytes(report) == {"notes.txt": b"mine"}


def _old_closure_report(folder: Path) -> dict[str, bytes]:
    """A closure report folder of an earlier run plus a user's files in it."""
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "mine.png").write_bytes(b"a user's figure")
    (folder / "figures" / "cutflow.png").write_bytes(b"old cutflow figure")
    (folder / "figures" / "presel_mass.png").write_bytes(b"old mass figure")
    (folder / "notes.txt").write_text("a user's notes")
    (folder / "summary.md").write_text("old summary")
    (folder / "summary.json").write_text(json.dumps({"figures": ["figures/cutflow.png", "figures/presel_mass.png"]}))
    return _tree_bytes(folder)


@pytest.mark.slow
def test_closure_force_keeps_everything_when_a_late_check_fails(tmp_path, capsys, small):
    """Issue item 3: ``closure --force`` deletes nothing before the checks that can still fail: with
    REF2 a copy of REF (same draw: refused after the runs) the old report and the user's files are
    all there, unchanged."""
    ref2 = tmp_path / "ref2.root"
    shutil.copy(small, ref2)
    report = tmp_path / "report"
    before = _old_closure_report(report)
    rc, _, err = _cli(capsys, "closure", small, ref2, "-o", report, "--force", "--executor", "iterative", "--no-dnn",
                      "--no-figures", "--no-progress")
    assert rc == 2 and "not a second reference draw" in _one_line_error(err)
    assert _tree_bytes(report) == before
    assert sorted(p.name for p in report.iterdir()) == ["figures", "notes.txt", "summary.json", "summary.md"]


@pytest.mark.slow
def test_closure_force_replaces_only_its_own_files(tmp_path, capsys, small):
    """Issue item 3: ``closure --force`` rewrites its report files and removes the figures of the
    earlier report it replaces; a user's files in the folder (``figures/mine.png``, ``notes.txt``)
    stay as they were."""
    report = tmp_path / "report"
    _old_closure_report(report)
    rc, out, err = _cli(capsys, "closure", small, "-o", report, "--force", "--executor", "iterative", "--no-dnn",
                        "--no-figures", "--no-progress")
    assert rc == 0, err
    assert (report / "figures" / "mine.png").read_bytes() == b"a user's figure"
    assert (report / "notes.txt").read_text() == "a user's notes"
    assert not (report / "figures" / "cutflow.png").exists() and not (report / "figures" / "presel_mass.png").exists()
    assert json.loads((report / "summary.json").read_text())["dataset"] == "small"
    assert (report / "summary.md").read_text() != "old summary"
    assert sorted(p.name for p in report.iterdir()) == ["figures", "notes.txt", "summary.json", "summary.md"]


def test_demo_force_deletes_nothing_before_the_report_is_written(tmp_path, capsys, monkeypatch):
    """Issue item 3: ``demo --force`` deletes nothing before its work succeeds: a failure in the runs
    leaves the earlier report and a user's ``figures/mine.png`` as they were."""
    import flashsim_coffea.demo.runs as runs
    from flashsim_coffea.errors import UserError

    def failing(*a, **kw):
        raise UserError("the runs failed")

    monkeypatch.setattr(runs, "run_all", failing)
    report = tmp_path / "demo"
    (report / "figures").mkdir(parents=True)
    (report / "figures" / "mine.png").write_bytes(b"a user's figure")
    (report / "figures" / "stack_SR_mass.png").write_bytes(b"old stack figure")
    (report / "summary.md").write_text("old summary")
    before = _tree_bytes(report)
    rc, _, err = _cli(capsys, "demo", "-o", report, "--force", "--executor", "iterative", "--no-progress")
    assert rc == 2 and "the runs failed" in _one_line_error(err)
    assert _tree_bytes(report) == before


def test_demo_force_removes_only_the_figures_of_the_report_it_replaces(tmp_path):
    """Issue item 3: after the demo wrote its new figures, the figures listed by the earlier
    ``summary.json`` that it did not write again are removed; files it never wrote stay."""
    from flashsim_coffea.demo.inputs import remove_replaced_figures

    report = tmp_path / "demo"
    (report / "figures").mkdir(parents=True)
    for name in ("mine.png", "stack_SR_mass.png", "upsampling_mass.png"):
        (report / "figures" / name).write_bytes(b"x")
    (report / "summary.json").write_text(json.dumps(
        {"figures": ["figures/stack_SR_mass.png", "figures/upsampling_mass.png", "../outside.png", "/etc/passwd"]}))
    (tmp_path / "outside.png").write_bytes(b"not the demo's")
    removed = remove_replaced_figures(report, ["figures/upsampling_mass.png"])
    assert removed == ["figures/stack_SR_mass.png"]
    assert sorted(p.name for p in (report / "figures").iterdir()) == ["mine.png", "upsampling_mass.png"]
    assert (tmp_path / "outside.png").exists()


# --------------------------------------------------------------------------- item 4
def test_efficiency_refuses_a_model_folder_of_another_spec(tmp_path, capsys, small):
    """Issue item 4: ``efficiency jets FILES -o MODEL_DIR`` with a muons model in MODEL_DIR is refused
    (one line naming the folder and both specs), even with ``--force``; nothing changes."""
    model = _copy_model("muons", tmp_path / "muons_model")
    before = _tree_bytes(model)
    for force in ((), ("--force",)):
        rc, _, err = _cli(capsys, "efficiency", "jets", small, "-o", model, *force)
        assert rc == 2
        line = _one_line_error(err)
        assert str(model) in line and "muons" in line and "jets" in line
    assert _tree_bytes(model) == before


def test_efficiency_replaces_an_existing_map_only_with_force(tmp_path, capsys, small):
    """Issue item 4: an existing ``efficiency.json`` is replaced only with ``--force`` (without: one
    line naming it); the new map is written for the spec."""
    model = _copy_model("muons", tmp_path / "muons_model")
    old = (model / "efficiency.json").read_bytes()
    rc, _, err = _cli(capsys, "efficiency", "muons", small, "-o", model)
    assert rc == 2
    line = _one_line_error(err)
    assert "efficiency.json" in line and "--force" in line
    assert (model / "efficiency.json").read_bytes() == old
    rc, out, err = _cli(capsys, "efficiency", "muons", small, "-o", model, "--force")
    assert rc == 0, err
    new = json.loads((model / "efficiency.json").read_text())
    assert new["spec"] == "muons" and (model / "efficiency.json").read_bytes() != old
    assert sorted(p.name for p in model.iterdir()) == ["card.json", "efficiency.json", "model.safetensors"]


def test_extract_refuses_an_existing_output_without_force(tmp_path, capsys):
    """Issue item 4: ``extract -o existing.npz`` is refused without ``--force`` (one line naming it,
    before any work); with ``--force`` it is replaced."""
    out = tmp_path / "data.npz"
    out.write_bytes(b"someone's data")
    rc, _, err = _cli(capsys, "extract", "muons", "--synthetic", 50, "-o", out, "--no-progress")
    assert rc == 2
    line = _one_line_error(err)
    assert str(out) in line and "--force" in line
    assert out.read_bytes() == b"someone's data"
    rc, _, err = _cli(capsys, "extract", "muons", "--synthetic", 50, "-o", out, "--force", "--no-progress")
    assert rc == 0, err
    from flashsim_coffea.flows.data import load_data

    assert len(load_data(out).cond) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]


@pytest.fixture(scope="module")
def muon_data(tmp_path_factory) -> Path:
    """Training data for the muons spec (300 synthetic events)."""
    from flashsim_coffea.flows.data import save_data
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.objects.extract import extract_synthetic

    data, prov = extract_synthetic(get_spec("muons"), 300, 1, 11, progress=False)
    return save_data(tmp_path_factory.mktemp("muon_data") / "muons.npz", data.cond, data.targets, data.keys, data.gen, prov)


def test_train_refuses_an_existing_model_folder_without_force(tmp_path, capsys, muon_data):
    """Issue item 4: ``train -o EXISTING_MODEL_DIR`` is refused without ``--force`` (one line naming the
    folder); the model in it is unchanged."""
    model = _copy_model("muons", tmp_path / "model")
    before = _tree_bytes(model)
    rc, _, err = _cli(capsys, "train", "muons", muon_data, "-o", model, "--tiny", "--no-progress")
    assert rc == 2
    line = _one_line_error(err)
    assert str(model) in line and "--force" in line
    assert _tree_bytes(model) == before


@pytest.mark.slow
def test_train_force_removes_the_maps_of_the_model_it_replaces(tmp_path, capsys, muon_data):
    """Issue item 4: ``train --force`` into a model folder removes the ``efficiency.json``/``count.json``
    of the model it replaces (and says so in one line); other files stay."""
    model = _copy_model("muons", tmp_path / "model")
    (model / "count.json").write_text("{}")
    (model / "notes.txt").write_text("a user's notes")
    rc, out, err = _cli(capsys, "train", "muons", muon_data, "-o", model, "--tiny", "--force", "--no-progress")
    assert rc == 0, err
    said = [line for line in out.splitlines() if "efficiency.json" in line]
    assert len(said) == 1 and "count.json" in said[0]
    assert not (model / "efficiency.json").exists() and not (model / "count.json").exists()
    assert (model / "notes.txt").read_text() == "a user's notes"
    assert json.loads((model / "card.json").read_text())["training"]["n_train"] > 0


# --------------------------------------------------------------------------- item 5
def test_run_refuses_an_output_locked_by_a_live_process(tmp_path, capsys, small):
    """Issue item 5: ``run -o same.coffea`` while another live process holds its lock file
    (``.same.coffea.lock``, its PID inside) fails at once with one line naming the output and the
    PID; the output is not written and the other process's lock stays."""
    out = tmp_path / "same.coffea"
    lock = tmp_path / ".same.coffea.lock"
    holder = _live_process()
    try:
        lock.write_text(f"{holder.pid}\n")
        t0 = time.perf_counter()
        rc, _, err = _cli(capsys, "run", small, "--no-dnn", "-o", out)
        assert rc == 2 and time.perf_counter() - t0 < 30
        line = _one_line_error(err)
        assert str(out) in line and str(holder.pid) in line
        assert not out.exists() and lock.read_text() == f"{holder.pid}\n"
    finally:
        _stop(holder)


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys, small):
    """Issue item 5: a lock file left by a dead process does not block ``run``: it is taken over and
    removed at the end."""
    out = tmp_path / "same.coffea"
    lock = tmp_path / ".same.coffea.lock"
    lock.write_text(f"{_dead_pid()}\n")
    rc, _, err = _cli(capsys, "run", small, "--no-dnn", "-o", out)
    assert rc == 0, err
    assert out.is_file() and not lock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.coffea"]


_HOLDER = """
import sys, time
from flashsim_coffea.safe_write import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_two_writers_of_one_output(tmp_path, capsys, small):
    """Issue item 5: while one process writes ``same.coffea`` (holds ``output_lock``), ``run`` and
    ``simulate`` to it fail at once; SIGTERM of the holder removes its lock, and the next run goes on."""
    out = tmp_path / "same.coffea"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = tmp_path / ".same.coffea.lock"
        assert lock.is_file() and str(holder.pid) in lock.read_text()
        rc, _, err = _cli(capsys, "run", small, "--no-dnn", "-o", out, "--force")
        assert rc == 2 and str(holder.pid) in _one_line_error(err) and not out.exists()
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)
        assert holder.returncode == -signal.SIGTERM and not lock.exists()
    finally:
        _stop(holder)
    rc, _, err = _cli(capsys, "run", small, "--no-dnn", "-o", out)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.coffea"]


def test_simulate_and_closure_take_the_lock(tmp_path, capsys, small):
    """Issue item 5: ``simulate`` and ``closure`` fail at once on an output (file, report folder)
    whose lock a live process holds."""
    out, report = tmp_path / "sim.root", tmp_path / "report"
    holder = _live_process()
    try:
        (tmp_path / ".sim.root.lock").write_text(f"{holder.pid}\n")
        (tmp_path / ".report.lock").write_text(f"{holder.pid}\n")
        rc, _, err = _cli(capsys, "simulate", small, "-o", out, "--no-progress")
        assert rc == 2 and str(holder.pid) in _one_line_error(err) and not out.exists()
        rc, _, err = _cli(capsys, "closure", small, "-o", report, "--executor", "iterative", "--no-dnn", "--no-figures",
                          "--no-progress")
        assert rc == 2 and str(holder.pid) in _one_line_error(err)
        assert not report.exists() or not any(report.iterdir())
    finally:
        _stop(holder)


# --------------------------------------------------------------------------- item 12
def test_simulate_does_not_follow_a_symlink_at_the_old_temporary_name(tmp_path, capsys, small):
    """Issue item 12: a symbolic link pre-placed at ``.OUT.root.tmp<PID>`` is not followed: the file it
    points to and the link are unchanged, and OUT.root is written."""
    import uproot

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.root"
    trap = tmp_path / f".out.root.tmp{os.getpid()}"
    trap.symlink_to(victim)
    rc, _, err = _cli(capsys, "simulate", small, "-o", out, "--no-progress")
    assert rc == 0, err
    assert victim.read_bytes() == b"precious"
    assert trap.is_symlink() and os.readlink(trap) == str(victim)
    assert out.is_file() and not out.is_symlink() and uproot.open(out)["Events"].num_entries == 200


def test_simulate_temporary_name_is_not_derivable(tmp_path, capsys, monkeypatch, small):
    """Issue item 12: ``simulate`` writes to a temporary file beside the output whose name holds
    neither the PID nor a fixed suffix: two runs use two different names."""
    opened = _recreated_paths(monkeypatch)
    out = tmp_path / "out.root"
    for _ in range(2):
        rc, _, err = _cli(capsys, "simulate", small, "-o", out, "--force", "--no-progress")
        assert rc == 0, err
    assert len(opened) == 2 and opened[0] != opened[1]
    for name in map(Path, opened):
        assert name.parent == tmp_path and name.name.startswith(".out.root.") and str(os.getpid()) not in name.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.root"]


# --------------------------------------------------------------------------- item 13 (leftovers)
@pytest.mark.slow
def test_term_during_simulate_removes_its_temporary_file(tmp_path):
    """Issue item 13: SIGTERM during ``simulate`` leaves neither the output nor its temporary file."""
    out = tmp_path / "out.root"
    proc = _spawn("simulate", DY, "-o", out, "--folds", 10, "--no-progress")
    try:
        assert _wait_for(lambda: any(p.name.startswith(".out.root") for p in tmp_path.iterdir()), proc, timeout=120), \
            proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_term_during_closure_removes_its_temporary_folder(tmp_path):
    """Issue item 13: SIGTERM while ``closure`` draws REF2 into ``DIR/.ref2-*`` removes that folder."""
    report = tmp_path / "report"
    proc = _spawn("closure", DY, "-o", report, "--executor", "iterative", "--no-dnn", "--no-figures", "--no-progress")
    try:
        seen = _wait_for(lambda: report.is_dir() and any(p.name.startswith(".ref2-") for p in report.iterdir()), proc,
                         timeout=120)
        assert seen, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == -signal.SIGTERM
    assert [p.name for p in report.iterdir() if p.name.startswith(".ref2-")] == []
    assert [p.name for p in tmp_path.iterdir() if p.name != "report"] == []


@pytest.mark.slow
def test_a_killed_closure_s_temporary_folder_neither_blocks_nor_survives(tmp_path, capsys, small):
    """Issue item 13: a ``DIR/.ref2-*`` folder left by a killed closure does not make DIR "not empty"
    for the next closure, which removes it; nor does one survive ``--force``."""
    report = tmp_path / "report"
    leftover = report / ".ref2-k1ll3d"
    leftover.mkdir(parents=True)
    (leftover / "small_ref424242.root").write_bytes(b"half a file")
    rc, _, err = _cli(capsys, "closure", small, "-o", report, "--executor", "iterative", "--no-dnn", "--no-figures",
                      "--no-progress")
    assert rc == 0, err
    assert sorted(p.name for p in report.iterdir()) == ["summary.json", "summary.md"]
    (report / ".ref2-again").mkdir()
    rc, _, err = _cli(capsys, "closure", small, "-o", report, "--force", "--executor", "iterative", "--no-dnn",
                      "--no-figures", "--no-progress")
    assert rc == 0, err
    assert sorted(p.name for p in report.iterdir()) == ["summary.json", "summary.md"]
