"""The ``classcontrast`` command line.

Start-up is kept short: this module and the command modules import typer only; each command imports
torch and the rest of the library when it runs, so ``classcontrast --help`` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from .audit_cmd import audit_command
from .common import run_cli
from .concepts_cmd import concepts_command
from .dataset_cmd import explain_dataset_command
from .evaluate_cmd import evaluate_app
from .explain_cmd import explain_command
from .models_cmd import models_command
from .options import expand_multi_options
from .serve_cmd import serve_command
from .suite_cmd import reproduce_command, train_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Why did the classifier pick class A, and not the other classes?",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"classcontrast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit")) -> None:
    """Class-contrastive explanations for PyTorch image classifiers.

    Options taking several values take them space-separated (--contrast original weighted) or
    comma-separated (--contrast original,weighted).
    """


app.command("explain")(explain_command)
app.command("explain-dataset")(explain_dataset_command)
app.add_typer(evaluate_app, name="evaluate")
app.command("audit")(audit_command)
app.command("concepts")(concepts_command)
app.command("reproduce")(reproduce_command)
app.command("train")(train_command)
app.command("models")(models_command)
app.command("serve")(serve_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    run_cli(app, expand_multi_options(args))


if __name__ == "__main__":
    main()
