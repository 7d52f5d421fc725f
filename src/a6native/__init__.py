"""Compiled kernels of a6runner (Cython). No I/O, no logging, no policy.

Import them through ``a6runner._kernels``, which picks these or their pure-Python twins
(``a6runner._codec_py``, ``_headers_py``, ``_bodyrewrite_py``, ``_meter_py``) once, at import.

Beside the compiled modules live the pure-Python pieces both twins share (``errors``,
``rewrite_filters``). Nothing here imports ``a6runner``: the kernels stand on their own,
and the runtime re-exports what it needs from them.
"""
