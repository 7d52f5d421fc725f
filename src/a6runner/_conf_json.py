"""What a6runner.confs and its msgspec/pydantic adapters share: a conf's JSON document and
how a field path is written (a map key as ``[…]``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ._errors import ConfError

KEY = "[…]"  # a map key in a path: keys are never shown (a header name can be a secret)


def parse_json(raw: bytes) -> Any:
    """The JSON document of a conf (an empty conf is ``{}``); ConfError when it is not
    JSON, with where, never what."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:  # its msg quotes nothing of the document
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfError(f"is not valid JSON: {exc.msg} at {where}") from None
    except (ValueError, RecursionError):  # e.g. bytes that are not UTF-8
        raise ConfError("is not valid JSON") from None


def format_path(parts: Iterable[str | int]) -> str:
    """``["a", 2, "b", KEY]`` -> ``a[2].b[…]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == KEY:
            out += KEY
        else:
            out += f".{part}" if out else part
    return out
