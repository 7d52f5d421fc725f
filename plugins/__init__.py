"""The plugins bundled with a6runner (installed as the ``a6runner.plugins`` package).

Each module here is short enough to read as an example of the plugin API.
"""
