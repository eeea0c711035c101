"""The mode of the files aerec writes: what any new file gets under the user's umask.

``tempfile.mkstemp`` creates its file 0600, and the rename that makes a write atomic keeps that
mode: a model or run written so could not be read by another account (the one a service runs
as). Every atomic write sets :func:`new_file_mode` on its temporary file before the rename.
"""

from __future__ import annotations

import os

__all__ = ["new_file_mode"]


def new_file_mode() -> int:
    """``0o666`` less the process's umask (0644 under the usual umask 022)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux says the umask in /proc; elsewhere it can only be read by setting it, which would
    # for an instant give a file that another thread creates the wrong mode.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
