"""``classcontrast models``: the model families a ``--model`` can name, from their adapters' registrations (the
generated manifest: no torch)."""

from __future__ import annotations

from typing import cast

from . import manifest
from .common import console


def models_command() -> None:
    """List the model families: how a model is named, what it is, its package extra and its own options."""
    from rich.table import Table

    table = Table(title="Model families (--model)")
    for column in ("name", "what", "extra", "its options"):
        table.add_column(column)
    for f in manifest.FAMILIES:
        options = ", ".join("--" + str(o).replace("_", "-") for o in cast("list[str]", f["options"]))
        extra = f'pip install "classcontrast[{f["extra"]}]"' if f["extra"] else ""
        table.add_row(str(f["spec"]), str(f["summary"]), extra, options)
    console.print(table)


__all__ = ["models_command"]
