"""docs/plugins.md: every example route is valid JSON and its confs are accepted."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from a6runner._registry import build_registry

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
ROUTES = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
PHASES = ("ext-plugin-pre-req", "ext-plugin-post-req", "ext-plugin-post-resp")


def test_every_bundled_plugin_has_an_example() -> None:
    bundled = set(build_registry(bundled=True, entry_points=False))
    documented = {
        entry["name"]
        for route in ROUTES
        for phase, plugin in json.loads(route)["plugins"].items()
        for entry in plugin["conf"]
    }
    assert documented == bundled


@pytest.mark.parametrize("route", ROUTES)
def test_example_conf_is_accepted(route: str) -> None:
    registry = build_registry(bundled=True, entry_points=False)
    plugins = json.loads(route)["plugins"]
    assert plugins and set(plugins) <= set(PHASES)
    for phase, plugin in plugins.items():
        for entry in plugin["conf"]:
            assert isinstance(entry["value"], str)  # APISIX sends the conf as a JSON string
            if entry["name"] == "response-rewrite":
                assert phase == "ext-plugin-post-resp"
            registry[entry["name"]].plugin.parse_conf(entry["value"].encode())
