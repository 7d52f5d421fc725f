"""What the driver sends and how it answers: the scenarios, the canned request and the
canned ExtraInfo answers (the same as ``a6load.c``'s, so the two drivers compare)."""

from __future__ import annotations

from dataclasses import dataclass

from .._kernels import codec

ACT_ANY = -1  # don't check the action of an HTTPReqCall reply

# HTTPRespCall reply checks (Scenario.body_min)
BODY_ANY = -1  # don't check the body
BODY_RESP_SIZE = -2  # at least the ExtraInfo response body's size (--resp-body-size)


@dataclass(frozen=True)
class Scenario:
    """One row of the scenario table: everything about a scenario is here.

    ``vars`` answers ExtraInfo var questions by name (every other var is ``EXTRA_VAR``);
    ``asks`` is how many ExtraInfo questions a6runner asks per call (what the tests
    expect); ``in_a6load`` says the shared C driver has the same row (same plugin and
    conf), so figures from the two drivers compare.
    """

    name: str
    plugin: str
    conf: str
    call_type: int  # codec.RPC_HTTP_REQ_CALL or codec.RPC_HTTP_RESP_CALL
    expect: int  # expected HTTPReqCall action (codec.ACTION_*, or ACT_ANY)
    body_min: int  # HTTPRespCall: minimum body length, or BODY_ANY / BODY_RESP_SIZE
    desc: str
    asks: int = 0
    vars: tuple[tuple[str, bytes], ...] = ()
    in_a6load: bool = True
    # what the runner under test must be started with for this scenario's plugin
    runner_args: tuple[str, ...] = ()
    # round trips per call, when the runner sends several questions at once (else asks)
    round_trips: int | None = None

    @property
    def expected_round_trips(self) -> int:
        return self.asks if self.round_trips is None else self.round_trips


REQ, RESP = codec.RPC_HTTP_REQ_CALL, codec.RPC_HTTP_RESP_CALL
_PREFETCH_VARS = (("http_x_user", b"ada"), ("request_method", b"POST"))

# The first five are a6load.c's table.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "say", "say", '{"body":"hello"}', REQ, codec.ACTION_STOP, BODY_ANY, "Stop with a body"
        ),
        Scenario(
            "rewrite-headers",
            "request-body-rewrite",
            '{"new_body":"{\\"rewritten\\":true,\\"by\\":\\"a6load\\"}"}',
            REQ,
            codec.ACTION_REWRITE,
            BODY_ANY,
            "Rewrite action (request-body-rewrite)",
        ),
        Scenario(
            "resp-rewrite",
            "response-rewrite",
            '{"status":200,"headers":{"X-A":"b"},"body":"x"}',
            RESP,
            ACT_ANY,
            1,
            "HTTPRespCall: response-rewrite (status/headers/body)",
        ),
        Scenario(
            "resp-filter-body",
            "response-rewrite",
            '{"status":200,"headers":{"X-A":"b"},'
            '"filters":[{"regex":"hello","scope":"global","replace":"HELLO"}]}',
            RESP,
            ACT_ANY,
            BODY_RESP_SIZE,
            "HTTPRespCall: response-rewrite regex filters (fetches RespBody via ExtraInfo)",
            asks=1,
        ),
        Scenario(
            "noop",
            "a6load-no-such-plugin",
            "{}",
            REQ,
            codec.ACTION_NONE,
            BODY_ANY,
            "unknown plugin: empty Resp",
        ),
        Scenario(
            "request-validation",
            "request-validation",
            '{"allowed_content_types":["application/json"],"max_body_bytes":65536,'
            '"required_json_fields":["user","action"]}',
            REQ,
            codec.ACTION_NONE,
            BODY_ANY,
            "async filter: asks the content_type var, then the request body (JSON fields)",
            asks=2,
            vars=(("content_type", b"application/json; charset=utf-8"),),
            in_a6load=False,
        ),
        Scenario(
            "prefetch",
            "bench-prefetch",
            "{}",
            REQ,
            codec.ACTION_REWRITE,
            BODY_ANY,
            "plain def filter reading 3 declared vars + the request body: one round trip "
            "(runner started with --plugins a6runner.bench.plugins)",
            asks=4,
            vars=_PREFETCH_VARS,
            in_a6load=False,
            runner_args=("--plugins", "a6runner.bench.plugins"),
            round_trips=1,
        ),
        Scenario(
            "one-at-a-time",
            "bench-one-at-a-time",
            "{}",
            REQ,
            codec.ACTION_REWRITE,
            BODY_ANY,
            "the same logic awaiting each var and the body in turn: four round trips "
            "(runner started with --plugins a6runner.bench.plugins)",
            asks=4,
            vars=_PREFETCH_VARS,
            in_a6load=False,
            runner_args=("--plugins", "a6runner.bench.plugins"),
        ),
    )
}

REQ_PATH = "/api/v1/users/123"
REQ_SRC_IP = bytes((127, 0, 0, 1))
REQ_ARGS = (("page", "2"), ("limit", "50"), ("sort", "created_at"))
REQ_HEADERS = (
    ("host", "api.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    (
        "cookie",
        "session=3f2a9c1e7b5d4a8f9e0c1b2a3d4e5f60; theme=dark; _ga=GA1.2.123456789.1700000000",
    ),
    ("referer", "https://www.example.com/users?page=1"),
    ("cache-control", "max-age=0"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("x-request-id", "7d3b2c1a-9f8e-4d6c-b5a4-3e2f1a0b9c8d"),
)
RESP_STATUS = 200
RESP_HEADERS = (
    ("content-type", "application/json; charset=utf-8"),
    ("content-length", "4096"),
    ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ("server", "nginx"),
    ("cache-control", "no-cache"),
    ("etag", '"5f3c-1a2b3c4d"'),
    ("vary", "Accept-Encoding"),
    ("x-request-id", "7d3b2c1a-9f8e-4d6c-b5a4-3e2f1a0b9c8d"),
)
EXTRA_VAR = b"127.0.0.1"
EXTRA_REQ_BODY = (
    b'{"user":{"id":123,"name":"alice","email":"alice@example.com"},'
    b'"action":"update","fields":["name","email"]}'
)
_RESP_BODY_CHUNK = b'{"id":123,"msg":"hello world","tags":["a","b","c"]},\n'


def resp_body(size: int) -> bytes:
    """The canned upstream response body: ``size`` bytes of repeated JSON lines."""
    reps = size // len(_RESP_BODY_CHUNK) + 1
    return (_RESP_BODY_CHUNK * reps)[:size]
