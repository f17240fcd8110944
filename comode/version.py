"""The package's version, in a module of its own: every stage stamps what it writes with it,
and importing it must not import the package's lazy shortcuts (``comode.load_backbone``)."""

# The same as pyproject.toml's (tests/test_dependencies.py checks): a literal, because reading
# the installed metadata costs ~50 ms per import and fails in a checkout that is not installed.
__version__ = "0.1.0"
