"""a6runner: a Python plugin runner for Apache APISIX with a compiled core.

Write a plugin by subclassing :class:`Plugin`; test it with :mod:`a6runner.testing`;
run it with ``a6-runner run`` (APISIX starts it for you). See README.md and the
documentation site (docs/).
"""

from ._errors import A6Error, ConfError, DecodeError, FrameTooLarge, PluginError, ProtocolError
from ._kernels import bodyrewrite as _bodyrewrite
from ._kernels import headers as _headers
from ._kernels import implementation
from ._limits import LimitPolicy, LimitStoreError, Quota, RedisTarget, conf_fingerprint
from ._plugin import Needs, Plugin, Request, Response, ResponseWriter, RunnerServices
from ._registry import PluginLoadError
from ._runner import run
from ._tracing import TraceContext

MultiMap = _headers.MultiMap
BodyRewriter = _bodyrewrite.BodyRewriter

__all__ = [
    "A6Error",
    "BodyRewriter",
    "ConfError",
    "DecodeError",
    "FrameTooLarge",
    "LimitPolicy",
    "LimitStoreError",
    "MultiMap",
    "Needs",
    "Plugin",
    "PluginError",
    "PluginLoadError",
    "ProtocolError",
    "Quota",
    "RedisTarget",
    "Request",
    "Response",
    "ResponseWriter",
    "RunnerServices",
    "TraceContext",
    "conf_fingerprint",
    "implementation",
    "run",
]
