"""Classes named by the user: an index or a class name, resolved against a model's class names.

The rule, everywhere a class is named (``targets=``, ``Foil(...)``, ``Region(...)``, ``--target``,
``--foil``, ``--region``, class-folder names, the labels of a CSV):

1. a Python ``int`` is an index;
2. a text is first matched **exactly** against the class names; two classes with that exact name (ImageNet
   has two "crane") are a one-line error listing both indices;
3. then case-, ``_``/space- and repeated-space-insensitively, used only when **one** class matches;
   several (the embedded model's "Cardigan", the corgi, and "cardigan", the sweater) are a one-line error
   listing the candidates;
4. a text that names no class and is an integer (``"2"``, ``"-1"`` is not) is an index.

So on the command line a value that is both a name and an index is the name: for a model whose classes are
``"0" … "10"`` (class folders, zero-shot prompts), ``--target 2`` is the class called "2", wherever it is in
the list; an index is used only when no class has that name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ClassContrastError, did_you_mean


def _normal(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def _listed(indices: Sequence[int], categories: Sequence[str]) -> str:
    return ", ".join(f"{categories[i]!r} ({i})" for i in indices)


def class_index(value: str | int, categories: Sequence[str] | None, what: str = "class") -> int:
    """A class given by index or by name, resolved by the rule in this module's docstring; ``what`` names
    the input in the error, which suggests the nearest class names or lists the ambiguous ones."""
    where = "" if what == "class" else f" (from {what})"
    if isinstance(value, str) and categories is not None:
        exact = [i for i, c in enumerate(categories) if c == value]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            raise ClassContrastError(f"class {value!r}{where} is ambiguous: the model has {len(exact)} classes with "
                                     f"that name, {_listed(exact, categories)}; give the index")
        loose = [i for i, c in enumerate(categories) if _normal(c) == _normal(value)]
        if len(loose) == 1:
            return loose[0]
        if len(loose) > 1:
            raise ClassContrastError(f"class {value!r}{where} is ambiguous: it matches {_listed(loose, categories)} "
                                     "(ignoring case and spaces); write the name exactly or give the index")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if categories is not None and not 0 <= value < len(categories):
            raise ClassContrastError(f"class index {value}{where} is out of range for a model with "
                                     f"{len(categories)} classes (0..{len(categories) - 1})")
        if value < 0:
            raise ClassContrastError(f"class index {value}{where} is negative")
        return value
    if not isinstance(value, str):
        raise ClassContrastError(f"class {value!r}{where} must be a class index or a class name")
    if categories is None:
        raise ClassContrastError(f"class {value!r}{where} is a name, but the model has no class names: give the "
                                 f"class index, or explain a ModelBundle (it knows its classes)")
    raise ClassContrastError(f"unknown class {value!r}{where}{did_you_mean(value, categories)} ({_which(categories)})")


def _which(categories: Sequence[str]) -> str:
    """What classes a model has, for an unknown name's error: unnamed (numbered), all of them, or the first few."""
    if all(c.strip().isdigit() for c in categories):
        return (f"this model's {len(categories)} classes have no names, only numbers '{categories[0]}' … "
                f"'{categories[-1]}' (a model built from a file with no class names): give a class index")
    if len(categories) <= 12:
        return f"the model's classes: {', '.join(repr(c) for c in categories)}"
    shown = ", ".join(repr(c) for c in categories[:5])
    return f"give a class index or one of the model's {len(categories)} class names: {shown}, …"


def names_classes(spec: object) -> bool:
    """Whether ``spec`` (a value, a sequence, a sequence of sequences) contains a class name."""
    if isinstance(spec, str):
        return True
    if isinstance(spec, (list, tuple)):
        return any(names_classes(v) for v in spec)
    return False


def class_indices(spec: Any, categories: Sequence[str] | None, what: str = "class") -> Any:
    """``spec`` with every class name replaced by its index (nesting kept)."""
    if isinstance(spec, (list, tuple)):
        return [class_indices(v, categories, what) for v in spec]
    if isinstance(spec, str):
        return class_index(spec, categories, what)
    return spec
