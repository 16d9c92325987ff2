"""The one exception type users see for bad input."""

from __future__ import annotations

from collections.abc import Iterable


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


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` with the choices nearest to ``value`` (names with it as a word
    first, then close spellings, case-insensitive), or ``""`` when none is near."""
    import difflib
    import re

    names = [c for c in dict.fromkeys(choices) if c]
    lower = {c.lower(): c for c in names}
    key = " ".join(value.lower().replace("_", " ").split())
    word = re.compile(rf"(^|[^a-z0-9]){re.escape(key)}($|[^a-z0-9])") if len(key) >= 3 else None
    found = [c for c in names if word and word.search(c.lower().replace("_", " "))][:n]
    found += [lower[c] for c in difflib.get_close_matches(key, list(lower), n=n, cutoff=0.6)
              if lower[c] not in found][: n - len(found)]
    return f"; did you mean {', '.join(repr(c) for c in found)}?" if found else ""
