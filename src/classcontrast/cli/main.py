"""The ``classcontrast`` command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from ..contrasts import CONTRASTS
from ..methods import METHODS
from .common import expand_multi_options, run_cli
from .evaluate_cmd import evaluate_app
from .explain_cmd import explain_command
from .suite_cmd import reproduce_command, train_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Why did the classifier pick class A, and not the other classes?",
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Class-contrastive explanations for PyTorch image classifiers."""


app.command("explain")(explain_command)
app.add_typer(evaluate_app, name="evaluate")
app.command("reproduce")(reproduce_command)
app.command("train")(train_command)

_MULTI = {
    "--method": lambda v: v.lower() in METHODS,
    "--contrast": lambda v: v.lower() in CONTRASTS,
    "--target": lambda v: v.isdigit(),
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    run_cli(app, expand_multi_options(args, _MULTI))


if __name__ == "__main__":
    main()
