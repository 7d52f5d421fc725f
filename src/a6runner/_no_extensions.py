"""What ``A6_NO_EXTENSIONS`` means, in one place: at install time (setup.py), at run time
(``a6runner._kernels``) and in the test and benchmark conftests.

``1``, ``true`` or ``yes`` (any case) ask for the pure-Python implementation; unset, empty,
``0``, ``false`` or ``no`` mean the compiled one. Anything else is an error rather than a
guess, so a typo cannot silently pick the wrong implementation. setup.py loads this file
by path before a6runner is installed: it must import nothing but the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

VARIABLE = "A6_NO_EXTENSIONS"
PURE_VALUES = ("1", "true", "yes")
NATIVE_VALUES = ("", "0", "false", "no")


def pure_requested(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``A6_NO_EXTENSIONS`` asks for pure Python; ValueError when it is neither
    a yes nor a no."""
    raw = (os.environ if environ is None else environ).get(VARIABLE, "")
    value = raw.strip().lower()
    if value in PURE_VALUES:
        return True
    if value in NATIVE_VALUES:
        return False
    raise ValueError(
        f"{VARIABLE}={raw!r} is not understood: set it to 1, true or yes for the pure-Python "
        "implementation; leave it unset, empty, 0, false or no for the compiled one"
    )
