"""Silence C++ libraries (Pythia, FastJet) that print banners on file descriptor 1."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stdout():
    """Redirect the process's fd 1 to /dev/null for the duration (Python's sys.stdout is flushed first)."""
    sys.stdout.flush()
    fd = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)
