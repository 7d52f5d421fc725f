"""The code blocks of the documentation site's pages, for the tests that run an example
beyond what its page's own tests do (tests/test_doc_examples.py runs those)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def python_file(page: str, path: str, root: Path = DOCS) -> str:
    """The Python block of ``page`` (relative to docs/, or to ``root``) that is the file
    ``path``: the one whose first line is ``# path``."""
    text = (root / page).read_text(encoding="utf-8")
    found = re.findall(rf"```python\n(# {re.escape(path)}\n.*?)```", text, re.S)
    assert len(found) == 1, f"{len(found)} python blocks of {page} are the file {path}"
    return str(found[0])
