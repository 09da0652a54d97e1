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
* :func:`remove_replaced` — what ``--force`` removes in a report folder: the files the earlier
  report listed (its ``summary.json``) that the new one did not write again, nothing else.

**One writer per output**: :func:`output_lock` (a context manager; :class:`OutputLock` as an
object) holds the lock file ``.NAME.lock`` beside the output ``NAME`` (a file or a folder) while a
command writes it. The file is created with ``O_CREAT | O_EXCL`` and holds the PID, the host and
the process start time of its holder; a second writer fails at once with one line naming the
output and the holder's PID. A lock whose holder is gone (no such PID on this host, a zombie, or
a PID reused by a process started later) is taken over; a lock of another host never is. The
lock is removed when the block ends and, like a temporary file, on SIGTERM/SIGINT.

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

:class:`TemporaryFolder` (``mkdtemp`` in a given folder: scratch files of a command, e.g. a
closure's second reference draw) is removed with everything in it in the same cases. A command
that leaves one in its output folder when killed recognises it by its name prefix: it passes the
pattern to :func:`check_output_dir` (``ignore``) and removes it once it holds the output's lock.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["AtomicFile", "OutputLock", "TemporaryFolder", "atomic_write", "check_output", "check_output_dir",
           "ensure_writable_dir", "lock_path", "output_lock", "remove_replaced", "same_file"]

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


def check_output_dir(path: str | os.PathLike, force: bool = False, keep: Iterable[str] = (),
                     ignore: Iterable[str] = ()) -> Path:
    """An output folder (touches nothing): a UserError when it is a file, or when it holds
    anything but the names in ``keep`` and those matching a glob pattern of ``ignore`` (a
    command's own leftovers, e.g. ``".ref2-*"``) and ``force`` is not set."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.exists():
        keep, ignore = set(keep), tuple(ignore)
        content = sorted(p.name for p in out.iterdir()
                         if p.name not in keep and not any(fnmatch.fnmatchcase(p.name, pat) for pat in ignore))
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


def remove_replaced(folder: str | os.PathLike, written: Iterable[str], listing: str = "summary.json",
                    key: str = "figures", under: str = "figures") -> list[str]:
    """Remove the files of the report a command replaces in ``folder`` that it did not write again:
    those listed under ``key`` in the earlier report's ``listing`` (a JSON file in ``folder``, read
    before the new one is written), as paths relative to ``folder`` of files directly in its
    subfolder ``under``, that are plain files (not links) and are not in ``written``. Nothing else is
    touched (a user's own files, an entry outside ``under``, an unreadable listing: nothing).
    Returns the removed entries."""
    folder = Path(folder)
    try:
        listed = json.loads((folder / listing).read_text()).get(key) or []
    except (OSError, ValueError, AttributeError):
        return []
    keep = {os.path.normpath(str(w)) for w in written}
    base = os.path.realpath(folder / under)
    removed = []
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, str) or os.path.isabs(entry) or os.path.normpath(entry) in keep:
            continue
        p = folder / os.path.normpath(entry)
        if p.is_symlink() or not p.is_file() or os.path.dirname(os.path.realpath(p)) != base:
            continue
        p.unlink()
        removed.append(entry)
    return removed


# =========================================================================== temporary files and signals
_LOCK = threading.RLock()
_LIVE: set[str] = set()  # temporary files, folders and lock files of this process not yet renamed or removed
_FOLDERS: set[str] = set()  # those of _LIVE that are temporary folders
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
            if tmp in _FOLDERS:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
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

        def create() -> str:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=_folder(self.target))
            os.close(fd)
            return tmp

        self.path = _make_live(create)

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
        _forget_live(self.path)


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


def _make_live(create: Callable[[], str], folder: bool = False) -> str:
    """``create()`` (which makes a file or folder and returns its name) with the signal handler
    installed first and the name registered in the same critical section (no moment where a
    signal would leave it behind)."""
    with _LOCK:
        _install()
        try:
            path = create()
        except BaseException:
            if not _LIVE:
                _uninstall()
            raise
        _LIVE.add(path)
        if folder:
            _FOLDERS.add(path)
    return path


def _forget_live(path: str) -> None:
    with _LOCK:
        _LIVE.discard(path)
        _FOLDERS.discard(path)
        if not _LIVE:
            _uninstall()


class TemporaryFolder:
    """A folder made by :func:`tempfile.mkdtemp` in ``parent`` (``.path``), removed with everything
    in it by :meth:`remove`, at the end of a ``with`` block, and when the process gets
    SIGTERM/SIGINT with their default disposition (module docstring)."""

    def __init__(self, parent: str | os.PathLike, prefix: str = ".tmp-"):
        self.path = _make_live(lambda: tempfile.mkdtemp(prefix=prefix, dir=parent), folder=True)

    def remove(self) -> None:
        try:
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            _forget_live(self.path)

    def __enter__(self) -> Path:
        return Path(self.path)

    def __exit__(self, *exc) -> None:
        self.remove()


# =========================================================================== one writer per output
#: seconds after which a lock file without a readable holder (killed between its creation and the
#: write of its content) is taken for stale
UNREADABLE_LOCK_AGE = 10.0


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the output ``path`` (a file or a folder): ``.NAME.lock`` beside it, in its
    folder resolved (any spelling of one output gives one lock file)."""
    p = Path(os.path.abspath(path))
    return Path(os.path.realpath(p.parent)) / f".{p.name}.lock"


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of process ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[0], fields[19]
    except (OSError, ValueError, IndexError):
        return None


def _holder_alive(pid: int, host: str | None, start: str | None) -> bool:
    """Whether the process that wrote a lock (``pid`` on ``host``, started at ``start``) still runs."""
    if host is not None and host != socket.gethostname():
        return True  # cannot tell: never taken over
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, another user's
        return True
    stat = _process_stat(pid)
    if stat is not None and (stat[0] == "Z" or (start is not None and stat[1] != start)):
        return False  # a zombie, or the PID now belongs to a process started later
    return True


class OutputLock:
    """The lock of one output while this process writes it (module docstring): acquired by the
    constructor (a UserError naming the output and the holder when another live process holds
    it), released by :meth:`release` or at the end of a ``with`` block. ``what`` names the output
    in the messages (``"-o"``, ``"report folder"`` …)."""

    def __init__(self, path: str | os.PathLike, what: str = "output"):
        self.target = Path(path)
        self.path = lock_path(path)
        _check_writable(self.path.parent, f"{what} {path}")
        me = _process_stat(os.getpid())
        content = f"{os.getpid()} {socket.gethostname()} {me[1] if me else '-'}\n"
        for _ in range(5):
            try:
                _make_live(lambda: self._create(content))
                return
            except FileExistsError:
                self._take_over_stale(what)
            except OSError as err:
                raise UserError(f"cannot write {what} {path}: cannot create its lock file {self.path} "
                                f"({err.strerror or err})") from None
        raise UserError(f"{what} {path}: its lock file {self.path} keeps coming back; another flashsim process is "
                        "starting to write it: wait for it or choose another output")

    def _create(self, content: str) -> str:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
        return str(self.path)

    def _take_over_stale(self, what: str) -> None:
        """Remove the existing lock file if its holder is gone; a UserError if it runs."""
        try:
            text = self.path.read_text()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        except OSError:
            text, age = "", 0.0
        parts = text.split()
        try:
            pid = int(parts[0])
        except (IndexError, ValueError):
            if age < UNREADABLE_LOCK_AGE:  # being written by its holder
                raise UserError(f"{what} {self.target} is being written by another flashsim process (lock file "
                                f"{self.path}); wait for it to finish or choose another output") from None
            pid = None
        if pid is not None:
            host = parts[1] if len(parts) > 1 else None
            start = parts[2] if len(parts) > 2 and parts[2] != "-" else None
            if _holder_alive(pid, host, start):
                where = f" on {host}" if host and host != socket.gethostname() else ""
                raise UserError(f"{what} {self.target} is being written by another flashsim process (PID {pid}{where}, "
                                f"lock file {self.path}); wait for it to finish or choose another output (remove the "
                                "lock file only if that process is not flashsim)")
        try:  # stale: remove it, unless another process took it over meanwhile
            if self.path.read_text() == text:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Remove the lock file (once)."""
        if str(self.path) not in _LIVE:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            _forget_live(str(self.path))

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def output_lock(path: str | os.PathLike, what: str = "output") -> OutputLock:
    """The lock of the output ``path`` for a ``with`` block (:class:`OutputLock`)."""
    return OutputLock(path, what)
