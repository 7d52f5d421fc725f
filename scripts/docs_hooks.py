"""mkdocs hooks for the documentation site (mkdocs.yml ``hooks:``).

A page with ``<!-- README.md -->`` on a line of its own (the home page, docs/index.md,
whose other lines point GitHub's readers to README.md) becomes the repository's README.md,
its links to the site's pages (``docs/...``) and to the files the
site includes (CHANGELOG.md, ...) made the site's own: one front page, read on GitHub and
on the site alike. A relative link of README that the site cannot follow fails the build.

``<!-- a6-runner-help: COMMAND -->`` on a line of its own becomes the text block that
``a6-runner COMMAND --help`` prints (``<!-- a6-runner-help: -->`` for ``a6-runner
--help``), and ``<!-- a6-runner-help: * -->`` a section for each command ``a6-runner
--help`` lists that the page does not show already: the command-line page always shows
every command and flag the code has. The help comes from the a6runner installed where
mkdocs runs (``make docs`` uses .venv), 80 columns wide, as a terminal of that width
shows it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HELP_MARKER = re.compile(r"^<!-- a6-runner-help: *([a-z-]*|\*) *-->$", re.M)
# in `a6-runner --help`: the lines under "commands:" that name one, "    run   serve ..."
COMMAND_LINE = re.compile(r"^    ([a-z][a-z-]*)\s{2,}\S", re.M)


README_MARKER = re.compile(r"^<!-- README.md -->$", re.M)
ROOT = Path(__file__).resolve().parent.parent
# README's links to files the site shows as pages of its own
README_FILES_ON_THE_SITE = {
    "CHANGELOG.md": "changelog.md",
    "CONTRIBUTING.md": "contributing.md",
    "SECURITY.md": "security.md",
    "bench/README.md": "appendix/benchmarks.md",
}
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _readme_for_the_site() -> str:
    def site_link(match: re.Match[str]) -> str:
        target = match.group(1)
        path, hash_, anchor = target.partition("#")
        if "://" in target or target.startswith("#"):
            return match.group(0)
        if path.startswith("docs/"):
            return f"]({path.removeprefix('docs/')}{hash_}{anchor})"
        if path in README_FILES_ON_THE_SITE:
            return f"]({README_FILES_ON_THE_SITE[path]}{hash_}{anchor})"
        raise RuntimeError(
            f"README.md links to {target}, which the site does not have: link a docs/ page "
            "or add the file to README_FILES_ON_THE_SITE in scripts/docs_hooks.py"
        )

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return MARKDOWN_LINK.sub(site_link, readme)


def _help(command: str) -> str:
    argv = [sys.executable, "-m", "a6runner", *([command] if command else []), "--help"]
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("A6_NO_EXTENSIONS", None)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr}")
    # argparse says "python -m a6runner" when run that way; the installed command's name
    text = done.stdout.replace("python -m a6runner", "a6-runner").rstrip()
    return f"```text\n$ a6-runner {command + ' ' if command else ''}--help\n{text}\n```"


def _commands() -> list[str]:
    top = _help("")
    listed = top.partition("commands:")[2].partition("\n\n")[0]
    return COMMAND_LINE.findall(listed)


def _the_others(shown: set[str]) -> str:
    others = [command for command in _commands() if command not in shown]
    if not others:
        return "None: every command `a6-runner --help` lists is above."
    return "\n\n".join(f"### `a6-runner {command}`\n\n{_help(command)}" for command in others)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if README_MARKER.search(markdown):
        return _readme_for_the_site()
    shown = {m.group(1) for m in HELP_MARKER.finditer(markdown) if m.group(1) != "*"}
    return HELP_MARKER.sub(
        lambda m: _the_others(shown) if m.group(1) == "*" else _help(m.group(1)), markdown
    )
