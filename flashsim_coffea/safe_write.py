"""Output files that never destroy an input and are never left half-written.

**Checks before any work**

* :func:`check_output` — an output file: refused when it is one of the inputs under any
  spelling (relative/absolute, ``..``, a symbolic link: resolved paths compared; a hard link:
  ``os.stat`` device and inode compared when both exist), when it is a folder, when it exists
  and ``force`` is not set, and when its folder is missing, is a file, or cannot be written
  (tried by creating and removing a temporary file). Each refusal is one
  :class:`~flashsim_coffea.errors.UserError` line naming the path.
* :func:`check_output_dir` / :func:`ensure_writable_dir` — an output folder (reports): not a
  file, empty unless ``force``; created and tried for writing.
* :func:`same_file` — whether two paths name one file (the rule above).

**Atomic writes**

:func:`atomic_write` (a context manager) and :class:`AtomicFile` (the same as an object, for
writers that stay open across calls): the data go to a temporary file beside the target, made
by :func:`tempfile.mkstemp` (an unpredictable name ``.NAME.XXXXXXXX.tmp``, created exclusively,
so nobody can plant a file or a link there first), renamed over the target (``os.replace``,
atomic within a folder) when the write succeeds, removed when it fails. The file gets the mode a
new file gets from the umask (``0o666 & ~umask``), or keeps the mode of the file it replaces.

**Signals**: while a temporary file exists, SIGTERM and SIGINT whose disposition is the default
one (the process would die without unwinding, and a temporary file would stay) get a handler
that removes the live temporary files of this process and then lets the signal act as before
(restores the default and sends the signal again: the process ends with the signal's status).
A signal that already raises (SIGINT's ``KeyboardInterrupt``) or has the program's own handler
is left alone: when the write stops, its exception path removes the temporary file. The handler
is installed from the main thread only (Python's rule), and removed when no temporary file is
left. A killed process (SIGKILL) cannot clean up: its temporary file keeps the ``.tmp`` name
and is never mistaken for an output.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["AtomicFile", "atomic_write", "check_output", "check_output_dir", "ensure_writable_dir", "same_file"]

#: the signals whose default disposition is replaced while a temporary file is live
SIGNALS = (signal.SIGTERM, signal.SIGINT)


# =========================================================================== checks
def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same resolved path (symbolic links, ``..``
    and relative spellings), or, when both exist, the same device and inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _check_writable(folder: Path, where: str) -> None:
    """A UserError ``cannot write WHERE: ...`` unless a file can be created in ``folder``."""
    if not folder.is_dir():
        blocker = next((a for a in [folder, *folder.parents] if a.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UserError(f"cannot write {where}: {blocker} is a file, not a folder")
        raise UserError(f"cannot write {where}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".flashsim-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write {where}: folder {folder} is not writable ({err.strerror or err})") from None


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), force: bool = False,
                 what: str = "output") -> Path:
    """``path`` as a Path when it may be written, else a one-line UserError (module docstring):
    it is one of ``inputs`` (even with ``force``), a folder, an existing file without ``force``,
    or its folder is missing or not writable. ``what`` names the path in the messages (e.g.
    ``"-o"``, ``"--root"``, ``"output"``)."""
    p = Path(path)
    for i in inputs:
        if same_file(p, i):
            other = "" if str(i) == str(path) else f" ({i})"
            raise UserError(f"{what} {path} is an input file{other}; refusing to overwrite it, choose another output")
    if p.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if (p.exists() or p.is_symlink()) and not force:
        raise UserError(f"{what} {path} already exists; use --force to overwrite it")
    _check_writable(_folder(p), f"{what} {path}")
    return p


def check_output_dir(path: str | os.PathLike, force: bool = False, keep: Iterable[str] = ()) -> Path:
    """An output folder (touches nothing): a UserError when it is a file, or when it holds
    anything but the names in ``keep`` and ``force`` is not set."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.exists():
        keep = set(keep)
        content = sorted(p.name for p in out.iterdir() if p.name not in keep)
        if content and not force:
            shown = ", ".join(content[:5]) + (" …" if len(content) > 5 else "")
            raise UserError(f"output folder {out} is not empty ({shown}); use --force to overwrite or -o another folder")
    return out


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (with parents) and check a file can be written in it, before any work;
    a UserError naming the folder otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write to the output folder {folder}: {err.strerror or err}") from err
    return folder


# =========================================================================== temporary files and signals
_LOCK = threading.RLock()
_LIVE: set[str] = set()  # temporary files of this process not yet renamed or removed
_INSTALLED: dict[int, tuple[int, object]] = {}  # signal -> (pid that installed the handler, our handler)


def _umask() -> int:
    """The process umask (read from /proc where it is there: changing it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_live() -> None:
    for tmp in list(_LIVE):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _LIVE.discard(tmp)


def _on_signal(signum, frame) -> None:
    """Remove the live temporary files, then die of the signal as the default disposition would."""
    owner = _INSTALLED.get(signum, (None, None))[0]
    if owner == os.getpid():  # not in a process forked while a write was live: the files are its parent's
        _remove_live()
    signal.signal(signum, signal.SIG_DFL)
    _INSTALLED.pop(signum, None)
    os.kill(os.getpid(), signum)


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        if sig in _INSTALLED:
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)
                _INSTALLED[sig] = (os.getpid(), _on_signal)
        except (ValueError, OSError):  # not the main thread of the main interpreter
            pass


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, (pid, handler) in list(_INSTALLED.items()):
        try:
            if pid == os.getpid() and signal.getsignal(sig) is handler:
                signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):
            continue
        _INSTALLED.pop(sig, None)


class AtomicFile:
    """A temporary file beside ``target`` (``.path``: write it, by name), renamed to ``target`` by
    :meth:`commit` or removed by :meth:`discard` (module docstring). Removed too when the process
    gets SIGTERM/SIGINT with their default disposition."""

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        with _LOCK:
            _install()  # before the file exists: no moment where a signal would leave it behind
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=_folder(self.target))
            except BaseException:
                if not _LIVE:
                    _uninstall()
                raise
            _LIVE.add(tmp)
            os.close(fd)
        self.path = tmp
        self.done = False

    def commit(self) -> Path:
        """Give the file its mode (the replaced file's, else ``0o666 & ~umask``: not mkstemp's 0600)
        and rename it to the target; returns the target."""
        try:
            mode = self.target.stat().st_mode & 0o7777 if self.target.exists() else 0o666 & ~_umask()
            os.chmod(self.path, mode)
            os.replace(self.path, self.target)
        except BaseException:
            self.discard()
            raise
        self._forget()
        return self.target

    def discard(self) -> None:
        """Remove the temporary file (the target is left as it was)."""
        try:
            Path(self.path).unlink(missing_ok=True)
        finally:
            self._forget()

    def _forget(self) -> None:
        self.done = True
        with _LOCK:
            _LIVE.discard(self.path)
            if not _LIVE:
                _uninstall()


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """The name of a temporary file beside ``path`` to write: renamed to ``path`` when the block
    succeeds, removed when it raises (or the process gets SIGTERM/SIGINT; module docstring)."""
    staged = AtomicFile(path)
    try:
        yield staged.path
    except BaseException:
        staged.discard()
        raise
    staged.commit()
