"""What every command shares: the Typer apps, the consoles, logging setup and user errors.

Exit codes of every command: 0 success, 1 some videos failed (recorded in the store) or a
check failed, 2 bad usage or an unusable input/store, 3 the store's disk is full (free
space and run the same command again: it resumes).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from typing import Annotated, Any, Callable, Iterator

import typer
from rich.console import Console

from comode import logs

__all__ = [
    "app",
    "store_app",
    "train_app",
    "evaluate_app",
    "plot_app",
    "console",
    "out_console",
    "fail",
    "user_errors",
    "parse_size",
    "int_list",
    "setup_logging",
    "EXIT_STORE_FULL",
    "OVERRIDES_HELP",
    "LOG_LEVEL_OPTION",
    "OVERWRITE_OPTION",
    "ProgressOption",
    "option_parameter",
    "with_options",
]

app = typer.Typer(
    help="comode: context and motion decoupling for self-supervised video learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect, validate and reindex a comode store.", no_args_is_help=True)
train_app = typer.Typer(
    help="Pretrain a V-Network (context and motion decoupling) and export it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
evaluate_app = typer.Typer(
    help="Evaluate a pretrained V-Network: retrieval, linear probe, finetuning, comparison.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
plot_app = typer.Typer(help="Pictures of runs: pretext curves against their blind levels.", no_args_is_help=True)
console = logs.console()  # stderr: messages, log records and progress bars share it
# Rich wraps at 80 columns when not on a terminal: in logs and pipes keep lines whole.
out_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
logger = logging.getLogger("comode.cli")

EXIT_STORE_FULL = 3
OVERRIDES_HELP = "Config overrides key=value, e.g. optim.epochs=10 data.batch_size=32 (YAML values)."
# --log-level: on the umbrella and on each alias (before the subcommand: `train --log-level
# DEBUG pretrain ...`), and on `extract` itself (an alias with one command); also COMODE_LOG_LEVEL.
LOG_LEVEL_OPTION = typer.Option(
    "INFO",
    "--log-level",
    envvar="COMODE_LOG_LEVEL",
    help="Log level of comode's messages: DEBUG, INFO, WARNING, ERROR.",
)

# --overwrite of the commands that write a run folder (comode.train.runlock).
OVERWRITE_OPTION = typer.Option(
    False,
    "--overwrite",
    help="Write the run into --out although it holds files comode did not write (a run there needs --resume).",
)

ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]


def option_parameter(name: str, kind: Any, default: Any, help: str | None = None) -> inspect.Parameter:
    """The parameter ``name: kind = default`` of a command, a typer option with ``help``
    (without: ``kind`` is an ``Annotated`` option type, e.g. :data:`ProgressOption`)."""
    annotation = kind if help is None else Annotated[kind, typer.Option(help=help)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def with_options(name: str, options: list[inspect.Parameter], combine: Callable[..., Any]) -> Callable:
    """A decorator that gives a command the typer ``options`` (:func:`option_parameter`) after
    its own; the command receives ``combine(**their values)`` as its parameter ``name``, which
    it leaves unannotated (typer evaluates every annotation of the command).

    Options that several commands share are so declared once.  Typer has no such feature;
    this is the decorator its maintainers suggest (fastapi/typer#153): typer reads a
    command's options from its ``__signature__``.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [parameter for parameter in signature.parameters.values() if parameter.name != name]

        @functools.wraps(command)
        def with_combined(**values: Any) -> Any:
            combined = combine(**{option.name: values.pop(option.name) for option in options})
            return command(**values, **{name: combined})

        with_combined.__signature__ = signature.replace(parameters=[*own, *options])
        with_combined.__annotations__ = {p.name: p.annotation for p in with_combined.__signature__.parameters.values()}
        return with_combined

    return decorate


def setup_logging(level: str | None) -> None:
    try:
        logs.setup(level)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log-level") from None


def _main(log_level: str = LOG_LEVEL_OPTION) -> None:
    """comode: context and motion decoupling for self-supervised video learning."""
    setup_logging(log_level)


for _app in (app, train_app, evaluate_app):
    _app.callback()(_main)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error; return the Exit to raise (``raise fail(...)``)."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Errors the user can fix (a bad checkpoint, config or store) end the command with their
    message and exit code 2 instead of a traceback."""
    try:
        yield
    except kinds as error:
        # str() of a KeyError is the repr of its message (quoted); show the message itself.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise fail(str(message)) from None


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'340x256' -> (340, 256), or a usage error naming ``option``."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise fail(f"{option} must look like WIDTHxHEIGHT, e.g. 340x256; got {text!r}") from None
    return width, height


def int_list(text: str, option: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2], or a usage error naming ``option``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{option} must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
