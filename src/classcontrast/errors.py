"""The one exception type users see for bad input."""

from __future__ import annotations


class ClassContrastError(ValueError):
    """Bad input (file, tensor, class, layer, method, model...), explained in one line.

    The command line turns it into a one-line message and exit code 2; library users can catch it
    like any ``ValueError``.
    """


class ClassContrastWarning(UserWarning):
    """Something legal but probably unintended (e.g. a foil equal to the target); the result is still returned."""


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): what a one-line
    error quotes from a library's or a model's own exception."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
