"""``a6-runner schema`` and ``a6-runner check-route``: each plugin's JSON Schema, and the
ext-plugin confs of APISIX documents checked against the installed plugins before they are
deployed — by path, never by value, with the documented exit status."""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from a6runner._cli import main
from a6runner._conf_tools import plugin_schema
from a6runner._registry import build_registry

pytestmark = pytest.mark.runtime

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))
BUNDLED = build_registry(entry_points=False)
SECRET = "s3cr3t-Bearer-9d1"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- schema -------------------------------------------------------------------------------------


def test_every_bundled_plugin_has_a_schema(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "schema", "--no-entry-points")
    schemas = json.loads(out)
    assert (status, err) == (0, "")
    assert sorted(schemas) == sorted(BUNDLED)
    for name, schema in schemas.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["title"] == name
        jsonschema.Draft202012Validator.check_schema(schema)


def test_one_name_prints_its_schema_alone(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "schema", "fault-injection")
    schema = json.loads(out)
    assert status == 0 and schema["required"] == ["http_status"]
    assert schema["properties"]["percentage"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "default": 100,
    }


def test_a_plugin_without_a_schema_is_listed_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "schema", "--plugins", SUPPORT, "--no-bundled", "stopper", "boom"
    )
    assert status == 0 and json.loads(out) == {"stopper": None, "boom": None}
    assert "no schema: stopper, boom (its parse_conf is written by hand" in err
    status, out, err = run(capsys, "schema", "--plugins", SUPPORT, "--no-bundled", "stopper")
    assert (status, out) == (1, "") and "'stopper' has no schema" in err
    status, out, err = run(capsys, "schema", "--no-entry-points", "nope")
    assert (status, out) == (1, "") and "no plugin named 'nope' (registered: fault-injection" in err


# The confs each plugin's tests use, accepted (schema and plugin agree)...
GOOD: dict[str, list[Any]] = {
    "say": [{}, {"body": "hello"}, {"body": ""}],
    "fault-injection": [{"http_status": 500}, {"http_status": 200, "body": "x", "percentage": 0}],
    "limit-req": [{}, {"rate": 5, "burst": 1}, {"rate": 0.5, "burst": 0, "policy": "local"}],
    "limit-count": [
        {"count": 1, "time_window": 60},
        {"count": 5, "time_window": 1, "key_type": "constant", "key": "k", "group": "g"},
        {"count": 1, "time_window": 1, "policy": "redis", "redis_host": "127.0.0.1"},
    ],
    "request-body-rewrite": [{}, {"new_body": "x"}],
    "response-rewrite": [
        {},
        {"status": 201, "headers": {"X-A": "1"}, "body": "b"},
        {"filters": [{"regex": "a+", "scope": "global", "replace": "b"}]},
    ],
    "ip-restriction": [{"whitelist": ["10.0.0.0/8", "::1"]}, {"blacklist": ["1.2.3.4"]}],
    "request-id": [{}, {"header_name": "X-Trace-Id", "include_in_response": False}],
    "request-validation": [
        {},
        {"allowed_content_types": ["application/json", "text/*"], "max_body_bytes": 100},
        {"required_json_fields": ["name"], "reject_status": 422},
    ],
    "proxy-rewrite": [
        {},
        {"uri": "/new", "host": "h", "headers": {"set": {"X-A": "1"}, "remove": ["x-b"]}},
        {"args": {"add": {"a": "1"}}},
    ],
}
# ... and the bad confs of their tests a schema cannot refuse: JSON Schema's integer takes
# 500.0; an IP/CIDR's syntax and a regex that compiles are beyond its keywords.
SCHEMA_CANNOT_SAY = {
    ("fault-injection", '{"http_status": 500.0}'),
    ("ip-restriction", '{"whitelist": ["10.0.0.0/33"]}'),
    ("ip-restriction", '{"whitelist": ["not-an-ip"]}'),
    ("ip-restriction", '{"blacklist": ["2001:db8::/129"]}'),
    ("response-rewrite", '{"filters": [{"regex": "(", "replace": "x"}]}'),
}


def bad_confs(name: str) -> list[Any]:
    """The confs a plugin's own tests reject (their test_bad_conf_* parameters)."""
    module = importlib.import_module("test_plugin_" + name.replace("-", "_"))
    found = []
    for attr in dir(module):
        if attr.startswith("test_bad_conf"):
            for mark in getattr(getattr(module, attr), "pytestmark", []):
                if mark.name == "parametrize" and mark.args[0].startswith("conf"):
                    found += [p[0] if isinstance(p, tuple) else p.values[0] for p in mark.args[1]]
    return [c for c in found if not isinstance(c, str)]  # (a string: not JSON at all)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_schema_agrees_with_its_plugin(name: str) -> None:
    plugin = BUNDLED[name].plugin
    validator = jsonschema.Draft202012Validator(plugin_schema(plugin))
    for conf in GOOD[name]:
        plugin.parse_conf(json.dumps(conf).encode())  # accepted by the plugin...
        assert validator.is_valid(conf), (name, conf)  # ...and by the schema
    bad = bad_confs(name)
    assert bad, name
    for conf in bad:
        with pytest.raises(ValueError):  # ConfError is a ValueError
            plugin.parse_conf(json.dumps(conf).encode())
        if (name, json.dumps(conf)) not in SCHEMA_CANNOT_SAY:
            assert not validator.is_valid(conf), (name, conf)


# -- check-route ----------------------------------------------------------------------------------


def ext(*entries: tuple[str, Any]) -> dict[str, Any]:
    return {
        "conf": [
            {"name": n, "value": v if isinstance(v, str) else json.dumps(v)} for n, v in entries
        ]
    }


ROUTE = {
    "uri": "/r",
    "plugins": {
        "ext-plugin-pre-req": ext(
            ("say", {"body": "hi"}), ("ip-restriction", {"whitelist": [SECRET]})
        ),
        "ext-plugin-post-resp": ext(("response-rewrite", {"status": SECRET})),
        "limit-count": {"count": 1},  # an APISIX plugin: not ours to check
    },
}
STANDALONE = {
    "routes": [
        {"uri": "/ok", "plugins": {"ext-plugin-pre-req": ext(("say", {"body": "x"}))}},
        ROUTE,
    ],
    "services": [{"id": 1, "plugins": {"ext-plugin-post-req": ext(("nope", {}))}}],
    "plugin_configs": [{"id": 1, "plugins": {"ext-plugin-pre-req": ext(("say", "{not json"))}}],
    "global_rules": [{"id": 1, "plugins": {"ext-plugin-pre-req": ext(("request-id", {}))}}],
}
STANDALONE_PROBLEMS = [
    "routes[1].plugins.ext-plugin-pre-req.conf[1] (ip-restriction): whitelist[0]: not an IP "
    "address or CIDR (a guard: the runner would refuse every call with 503)",
    "routes[1].plugins.ext-plugin-post-resp.conf[0] (response-rewrite): status: must be an "
    "integer in 0..999 (got a string)",
    "services[0].plugins.ext-plugin-post-req.conf[0] (nope): no plugin with that name is "
    "registered",
    "plugin_configs[0].plugins.ext-plugin-pre-req.conf[0] (say): is not valid JSON: Expecting "
    "property name enclosed in double quotes at line 1 column 2",
]


def write(tmp_path: Path, document: Any, as_yaml: bool = False) -> str:
    path = tmp_path / ("apisix.yaml" if as_yaml else "route.json")
    path.write_text(
        yaml.safe_dump(document, sort_keys=False) + "#END\n" if as_yaml else json.dumps(document)
    )
    return str(path)


def test_a_standalone_apisix_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "check-route", "--no-entry-points", write(tmp_path, STANDALONE, True)
    )
    assert status == 1
    assert out.splitlines() == STANDALONE_PROBLEMS
    assert err == "a6-runner check-route: 7 ext-plugin conf entries checked: 4 problems\n"
    assert SECRET not in out + err


@pytest.mark.parametrize(
    "document, prefix",
    [
        (ROUTE, ""),
        ({"key": "/apisix/routes/1", "value": ROUTE}, "value."),
        (
            {"total": 2, "list": [{"key": "0", "value": {}}, {"key": "1", "value": ROUTE}]},
            "list[1].value.",
        ),
        ({"node": {"nodes": [{"value": {"uri": "/"}}, {"value": ROUTE}]}}, "node.nodes[1].value."),
    ],
    ids=["route", "admin-get", "admin-list-3", "admin-list-2"],
)
def test_route_objects_and_admin_api_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: Any, prefix: str
) -> None:
    status, out, _ = run(capsys, "check-route", write(tmp_path, document))
    assert status == 1
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == [
        f"{prefix}plugins.ext-plugin-pre-req.conf[1]",
        f"{prefix}plugins.ext-plugin-post-resp.conf[0]",
    ]


def test_all_well_exits_0_and_json_for_ci(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = {"routes": [STANDALONE["routes"][0]]}
    status, out, err = run(capsys, "check-route", write(tmp_path, good))
    assert (status, out) == (0, "")
    assert "1 ext-plugin conf entries checked: 0 problems" in err
    status, out, _ = run(capsys, "check-route", "--json", write(tmp_path, STANDALONE))
    report = json.loads(out)
    assert status == 1 and report["checked"] == 7 and report["warnings"] == []
    assert report["problems"][0] == {
        "path": "routes[1].plugins.ext-plugin-pre-req.conf[1]",
        "plugin": "ip-restriction",
        "severity": "problem",
        "message": "whitelist[0]: not an IP address or CIDR (a guard: the runner would refuse "
        "every call with 503)",
        "field": "whitelist[0]",
    }
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(good).encode())))
    assert run(capsys, "check-route", "-")[0] == 0


@pytest.mark.usefixtures("without_redis")
def test_a_conf_needing_a_package_not_installed_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = {
        "count": 1,
        "time_window": 60,
        "policy": "redis",
        "redis_host": "h",
        "redis_password": SECRET,
    }
    route = {"uri": "/", "plugins": {"ext-plugin-pre-req": ext(("limit-count", conf))}}
    status, out, err = run(capsys, "check-route", write(tmp_path, route))
    assert status == 0
    assert out == (
        "warning: plugins.ext-plugin-pre-req.conf[0] (limit-count): not checked: policy redis "
        "needs the redis package: pip install 'a6runner[redis]'\n"
    )
    assert "1 warnings (not checked here)" in err and SECRET not in out + err


@pytest.mark.parametrize(
    "content, said",
    [
        (None, "cannot read"),
        ("42", "is not an APISIX route, Admin API export or apisix.yaml"),
        ("routes: [\n  - {", "is neither JSON nor valid YAML (line"),
    ],
)
def test_an_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, said: str
) -> None:
    path = tmp_path / "apisix.yaml"
    if content is not None:
        path.write_text(content)
    status, out, err = run(capsys, "check-route", str(path))
    assert (status, out) == (2, "")
    assert err.startswith("a6-runner check-route: error: ") and said in err


def test_odd_ext_plugin_entries_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    route = {
        "uri": "/",
        "plugins": {
            "ext-plugin-pre-req": {
                "conf": [{"value": "{}"}, {"name": "say", "value": {"body": 1}}]
            },
            "ext-plugin-post-req": {"conf": "say"},
            "ext-plugin-post-resp": [],
        },
    }
    status, out, _ = run(capsys, "check-route", write(tmp_path, route))
    assert status == 1
    assert out.splitlines() == [
        'plugins.ext-plugin-pre-req.conf[0]: must be an object with a "name" string',
        "plugins.ext-plugin-pre-req.conf[1] (say): value must be a string of JSON (APISIX sends "
        "it as is)",
        "plugins.ext-plugin-post-req.conf: must be a list of {name, value}",
        "plugins.ext-plugin-post-resp: must be an object",
    ]


def test_nothing_to_check_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "check-route", write(tmp_path, {"uri": "/", "plugins": {}}))
    assert (status, out) == (0, "")
    assert "nothing to check: no ext-plugin-pre-req" in err


def test_a_plugin_whose_parse_conf_raises_something_else_is_named_by_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaky = str(Path(__file__).with_name("leaky_plugins.py"))
    route = {"uri": "/", "plugins": {"ext-plugin-pre-req": ext(("leaky", {"token": SECRET}))}}
    status, out, _ = run(capsys, "check-route", "--plugins", leaky, write(tmp_path, route))
    assert status == 1
    assert out == (
        "plugins.ext-plugin-pre-req.conf[0] (leaky): its plugin raised ValueError (message not "
        "shown: it may quote the conf)\n"
    )


def test_plugins_that_do_not_load_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "schema", "--plugins", "/no/such/plugin.py")
    assert (status, out) == (2, "") and "'/no/such/plugin.py' does not exist" in err
    route = write(tmp_path, ROUTE)
    status, out, err = run(capsys, "check-route", "--plugins", "/no/such/plugin.py", route)
    assert (status, out) == (2, "") and "'/no/such/plugin.py' does not exist" in err


def test_yaml_without_pyyaml_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    status, out, err = run(capsys, "check-route", write(tmp_path, STANDALONE, as_yaml=True))
    assert (status, out) == (2, "")
    assert "is not JSON, and reading YAML needs PyYAML: pip install 'a6runner[yaml]'" in err
    assert run(capsys, "check-route", write(tmp_path, ROUTE))[0] == 1  # JSON needs nothing


def test_a_misspelt_plugin_name_gets_the_nearest_registered_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    route = {"plugins": {"ext-plugin-pre-req": ext(("ip-restrictoin", {}), ("nope", {}))}}
    status, out, _ = run(capsys, "check-route", "--no-entry-points", write(tmp_path, route))
    assert status == 1
    assert out.splitlines() == [
        "plugins.ext-plugin-pre-req.conf[0] (ip-restrictoin): no plugin with that name is "
        "registered (did you mean 'ip-restriction'?)",
        "plugins.ext-plugin-pre-req.conf[1] (nope): no plugin with that name is registered",
    ]
