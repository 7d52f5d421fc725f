"""The release version: pyproject.toml reads it from here (``[tool.setuptools.dynamic]``),
and the runner says it without asking importlib.metadata, which costs every process
about 2 MiB of imports."""

VERSION = "0.1.0"
