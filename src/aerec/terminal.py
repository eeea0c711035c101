"""Whether a person is watching: a terminal on stderr or a notebook, where progress bars help."""

from __future__ import annotations

import sys

__all__ = ["interactive"]


def interactive() -> bool:
    """True when stderr is a terminal or the code runs in a Jupyter kernel.

    Redirected output (a log file, a CI job, a pipe) gets no progress bar: tqdm's redraws
    would fill it with carriage returns.
    """
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stderr
        pass
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    kernel = get() if callable(get) else None
    # A terminal IPython has a TTY (seen above); a notebook's kernel has a "kernel" attribute.
    return kernel is not None and hasattr(kernel, "kernel")
