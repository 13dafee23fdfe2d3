"""The package version, in a module of its own: written into every output file, read by pyproject.toml, and
importable by the modules that `labelscrub/__init__.py` itself imports without going through the package."""

__version__ = "0.1.0"
