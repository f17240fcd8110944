"""``python -m comode`` runs the command line."""

from comode.cli import app

app(prog_name="comode")
