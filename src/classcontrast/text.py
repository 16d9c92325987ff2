"""Names made safe to show: in a terminal (no escape sequences, no markup, one line) and in a
spreadsheet (no formula runs). File, class and folder names come from users and data sets, so every
place that prints or writes them as text goes through these."""

from __future__ import annotations

import os

# What the figures, the explorer and the docs' map-sign page say of a map whose sum has the other sign than its
# score: one sentence, the same everywhere (a test checks the page and the docs hold it).
SIGN_NOTE = ("this map sums to the other sign than its score: what a map adds up to is the method's linearisation "
             "of the score, not the score itself (see the map-sign page), so read where the evidence lies, not "
             "how much")


def printable(text: str, lines: bool = False) -> str:
    """``text`` with control characters (ANSI escape sequences, new lines unless ``lines``) and
    undecodable bytes (a non-UTF-8 file name) written as escapes, so a name can never drive the
    terminal or split a line."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    keep = {" ", "\n"} if lines else {" "}
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def shown(path: os.PathLike[str] | str) -> str:
    """A path as text that prints safely (see `printable`)."""
    return printable(os.fspath(path))


def lossless(text: str) -> str:
    """A file name for JSON or CSV: valid UTF-8 text. A name that is not UTF-8 on disk (held by Python as
    surrogate escapes) keeps its bytes as ``\\xNN`` escapes instead of failing the write."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spreadsheet_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting with ``= + - @`` (or a tab / carriage
    return) would run as a formula, so it gets a leading apostrophe. Numbers are left as they are."""
    if isinstance(value, str):
        value = lossless(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


def count(n: int, word: str, plural: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``, ``"0 pairs"``: a number with its noun in the right number (``plural``
    when not the noun + "s")."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def spelling(name: str) -> str:
    """A method's name as compared: case, spaces, hyphens and underscores ignored and ``++`` read "plus plus", so
    ``Grad-CAM++``, ``GradCAMPlusPlus`` and ``gradcam_plus_plus`` are one name."""
    key = str(name).lower().replace("++", "plusplus")
    return "".join(c for c in key if c not in " -_×")
