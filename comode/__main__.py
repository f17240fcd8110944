"""``python -m comode`` runs the command line."""

from comode.cli import app

# The guard matters: loader workers started with "forkserver" (or "spawn") import the main
# module, which must not run the command line again.
if __name__ == "__main__":
    app(prog_name="comode")
