"""The package's version, in a module of its own: every stage stamps what it writes with it,
and importing it must not import the package's lazy shortcuts (``comode.load_backbone``)."""

from importlib.metadata import version

# Written once, in pyproject.toml; read from the installed package's metadata.
__version__ = version("comode")
