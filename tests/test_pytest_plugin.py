"""a6runner's pytest plugin, loaded here as everywhere a6runner is installed: the
fixtures used as a plugin's own tests use them, sync and asyncio, and in a fresh pytest
session (pytester) to see the runners stop and the marker's rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from a6runner import Plugin, Request
from a6runner.testing import AsyncClient, Client, RunnerHandle

pytestmark = pytest.mark.runtime
pytest_plugins = ["pytester"]


class Hello(Plugin):
    name = "hello"

    def request_filter(self, conf: dict[str, str], req: Request) -> None:
        req.respond(200, f"hello {conf.get('who', 'world')}")


@pytest.mark.a6runner(plugins=[Hello])
def test_the_marker_chooses_the_plugins(a6_runner: RunnerHandle, apisix: Client) -> None:
    assert sorted(a6_runner.plugins) == ["hello"]
    token = apisix.prepare_conf([("hello", {"who": "you"})])
    assert apisix.http_req_call(token).body == b"hello you"


@pytest.mark.asyncio
@pytest.mark.a6runner(plugins=[Hello], bundled=True)
async def test_asyncio_tests_get_an_async_client(apisix_async: AsyncClient) -> None:
    token = await apisix_async.prepare_conf([("say", {"body": "hi"}), ("hello", {})])
    assert (await apisix_async.http_req_call(token)).body == b"hi"


def test_start_runner_starts_more(start_runner: object) -> None:
    first = start_runner(Hello)  # type: ignore[operator]
    second = start_runner(bundled=True)  # type: ignore[operator]
    assert first.socket_path != second.socket_path
    assert "say" in second.plugins and "say" not in first.plugins


def test_in_a_fresh_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest
        from a6runner import Plugin

        class Hi(Plugin):
            name = "hi"
            def request_filter(self, conf, req):
                req.respond(201)

        SOCKETS = []

        @pytest.mark.a6runner(plugins=[Hi])
        def test_one(a6_runner, apisix):
            SOCKETS.append(a6_runner.socket_path)
            assert apisix.http_req_call(apisix.prepare_conf([("hi", {})])).status == 201

        def test_stopped_after_the_test():
            assert not os.path.exists(SOCKETS[0])

        def test_no_marker_serves_the_installed_entry_points(a6_runner):
            assert "hi" not in a6_runner.plugins

        @pytest.mark.a6runner("hi")
        def test_positional_marker_arguments_are_a_usage_error(a6_runner):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*a6runner takes keyword arguments*"])


def test_loading_it_imports_no_more_than_the_testing_kit_would(
    pytester: pytest.Pytester,
) -> None:
    """Loaded in every pytest session where a6runner is installed: nothing of ours but
    the package itself (as ``import a6runner.testing`` loads it) and the plugin."""
    done = subprocess.run(
        [sys.executable, "-c", "import a6runner, sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    package = set(done.stdout.split())
    pytester.makepyfile(
        f"""
        import sys
        def test_nothing_more():
            loaded = set(m for m in sys.modules if m.startswith(("a6runner", "a6native")))
            assert loaded - set({sorted(package)!r}) == {{"a6runner.pytest_plugin"}}, loaded
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
