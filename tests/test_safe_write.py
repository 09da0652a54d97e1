"""``flashsim_coffea.safe_write``: an output is never an input (any spelling, symbolic or hard link),
never replaced without ``--force``, and never left half-written — the temporary file has an
unpredictable name and is removed on an exception, on SIGTERM and on SIGINT."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flashsim_coffea.cli import main
from flashsim_coffea.errors import UserError
from flashsim_coffea.safe_write import (AtomicFile, _umask, atomic_write, check_output, check_output_dir, same_file)

REPO = Path(__file__).resolve().parents[1]
DY = REPO / "flashsim_coffea" / "samples" / "dy.root"


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- checks
def test_hard_link_to_an_input_is_refused(tmp_path):
    src = tmp_path / "in.root"
    src.write_bytes(b"input")
    link = tmp_path / "other" / "name.root"
    link.parent.mkdir()
    os.link(src, link)
    assert same_file(src, link)
    for force in (False, True):
        with pytest.raises(UserError) as err:
            check_output(link, [src], force=force)
        assert "is an input file" in _one_line(err) and str(link) in str(err.value)
    assert src.read_bytes() == b"input"


def test_symlink_and_other_spellings_of_an_input_are_refused(tmp_path, monkeypatch):
    src = tmp_path / "in" / "a.root"
    src.parent.mkdir()
    src.write_bytes(b"input")
    (tmp_path / "link.root").symlink_to(src)
    (tmp_path / "dirlink").symlink_to(src.parent, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for spelling in ("link.root", "dirlink/a.root", "in/../in/a.root", "./in/a.root", str(src)):
        with pytest.raises(UserError, match="is an input file"):
            check_output(spelling, ["in/a.root"], force=True)
    assert not same_file(src, tmp_path / "in" / "b.root")
    assert check_output(tmp_path / "in" / "b.root", [src]) == tmp_path / "in" / "b.root"


def test_existing_output_needs_force_and_the_folder_must_be_writable(tmp_path):
    out = tmp_path / "out.root"
    out.write_text("mine")
    with pytest.raises(UserError) as err:
        check_output(out, what="-o")
    assert _one_line(err) == f"-o {out} already exists; use --force to overwrite it"
    assert check_output(out, force=True) == out
    dangling = tmp_path / "dangling.root"
    dangling.symlink_to(tmp_path / "nowhere.root")
    with pytest.raises(UserError, match="already exists; use --force"):
        check_output(dangling)
    with pytest.raises(UserError, match="is a folder"):
        check_output(tmp_path, force=True)
    with pytest.raises(UserError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.root")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output(out / "x.root", force=True)
    assert out.read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the write probe is removed


def test_output_folder(tmp_path):
    folder = tmp_path / "report"
    assert check_output_dir(folder) == folder and not folder.exists()  # touches nothing
    folder.mkdir()
    (folder / "samples").mkdir()
    assert check_output_dir(folder, keep=("samples",)) == folder
    (folder / "summary.md").write_text("x")
    with pytest.raises(UserError, match=r"not empty \(samples, summary.md\); use --force"):
        check_output_dir(folder)
    assert check_output_dir(folder, force=True) == folder
    with pytest.raises(UserError, match="not a folder"):
        check_output_dir(folder / "summary.md", force=True)


# --------------------------------------------------------------------------- atomic writes
def test_temporary_name_is_unpredictable_and_removed_on_an_exception(tmp_path):
    target = tmp_path / "out.root"
    a, b = AtomicFile(target), AtomicFile(target)
    try:
        for staged in (a, b):
            tmp = Path(staged.path)
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.root.") and tmp.name.endswith(".tmp")
            assert tmp.name != f".out.root.tmp{os.getpid()}" and str(os.getpid()) not in tmp.name
            assert tmp.stat().st_mode & 0o777 == 0o600  # created exclusively, for us only, until the rename
        assert a.path != b.path
    finally:
        a.discard()
        b.discard()
    assert list(tmp_path.iterdir()) == []

    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("boom")
    assert not Path(tmp).exists() and target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.root"]


def test_rename_on_success_with_the_umask_mode(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    new = tmp_path / "new.coffea"
    with atomic_write(new) as tmp:
        if before == signal.SIG_DFL:  # the handler that removes the file on SIGTERM, only while it is live
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
        Path(tmp).write_text("content")
        assert not new.exists()
    assert signal.getsignal(signal.SIGTERM) == before
    assert new.read_text() == "content" and (new.stat().st_mode & 0o777) == (0o666 & ~_umask())
    os.chmod(new, 0o640)
    with atomic_write(new) as tmp:
        Path(tmp).write_text("again")
    assert new.read_text() == "again" and (new.stat().st_mode & 0o777) == 0o640  # a replaced file keeps its mode
    assert [p.name for p in tmp_path.iterdir()] == ["new.coffea"]


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from flashsim_coffea.safe_write import atomic_write

    with atomic_write(sys.argv[1]) as tmp:
        Path(tmp).write_text("half written")
        print(tmp, flush=True)
        time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_write_leaves_no_temporary_file(tmp_path, sig):
    target = tmp_path / "out.coffea"
    # the child starts with the default dispositions, whatever the test process inherited or set
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGINT)])
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.parent == tmp_path and tmp.exists()
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM  # it still dies of the signal
    else:
        assert proc.returncode != 0  # KeyboardInterrupt
    assert not tmp.exists() and not target.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the command line
def test_simulate_refuses_a_hard_link_to_its_input(tmp_path, capsys):
    src = tmp_path / "in.root"
    shutil.copy(DY, src)
    before = src.read_bytes()
    link = tmp_path / "out.root"
    os.link(src, link)
    assert main(["simulate", str(src), "-o", str(link), "--force", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is an input file" in err and str(link) in err and "\n" not in err and "Traceback" not in err
    assert src.read_bytes() == before and link.stat().st_ino == src.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.root", "out.root"]  # no temporary file
