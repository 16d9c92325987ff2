"""The one exception type users see for bad input."""

from __future__ import annotations


class ClassContrastError(ValueError):
    """Bad input (file, tensor, class, layer, method, model...), explained in one line.

    The command line turns it into a one-line message and exit code 2; library users can catch it
    like any ``ValueError``.
    """


class ClassContrastWarning(UserWarning):
    """Something legal but probably unintended (e.g. a foil equal to the target); the result is still returned."""
