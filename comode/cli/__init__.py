"""Command line: ``comode`` (umbrella) and the ``extract`` / ``train`` / ``evaluate`` aliases.

Thin on purpose: parse options -> build a settings object -> call one library function ->
print what it returns.  One module per command group (:mod:`~comode.cli.extract`,
:mod:`~comode.cli.store`, :mod:`~comode.cli.sample`, :mod:`~comode.cli.train`,
:mod:`~comode.cli.evaluate`); what they share is in :mod:`~comode.cli.common` (exit codes
there).
"""

from comode.cli import evaluate, extract, plot, sample, store, train  # noqa: F401  (registers the commands)
from comode.cli.common import app, evaluate_app, plot_app, store_app, train_app
from comode.cli.extract import extract_app

app.add_typer(store_app, name="store")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(plot_app, name="plot")

__all__ = ["app", "extract_app", "train_app", "evaluate_app"]
