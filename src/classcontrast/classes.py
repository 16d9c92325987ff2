"""Classes named by the user: an index or a class name, resolved against a model's class names."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ClassContrastError, did_you_mean


def _normal(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def class_index(value: str | int, categories: Sequence[str] | None, what: str = "class") -> int:
    """A class given by index or by name (case, ``_`` / space and repeated spaces ignored), for
    ``Foil("Egyptian cat")``, string targets, ``--target``/``--foil`` values and class-folder names;
    ``what`` names the input in the error, which suggests the nearest class names."""
    where = "" if what == "class" else f" (from {what})"
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if categories is not None and not 0 <= value < len(categories):
            raise ClassContrastError(f"class index {value}{where} is out of range for a model with "
                                     f"{len(categories)} classes (0..{len(categories) - 1})")
        return value
    if not isinstance(value, str):
        raise ClassContrastError(f"class {value!r}{where} must be a class index or a class name")
    if categories is None:
        raise ClassContrastError(f"class {value!r}{where} is a name, but the model has no class names: give the "
                                 f"class index, or explain a ModelBundle (it knows its classes)")
    norm = {_normal(c): i for i, c in enumerate(categories)}
    if _normal(value) in norm:
        return norm[_normal(value)]
    raise ClassContrastError(f"unknown class {value!r}{where}{did_you_mean(value, categories)} "
                             f"(give a class index or one of the model's {len(categories)} class names)")


def names_classes(spec: object) -> bool:
    """Whether ``spec`` (a value, a sequence, a sequence of sequences) contains a class name."""
    if isinstance(spec, str):
        return True
    if isinstance(spec, (list, tuple)):
        return any(names_classes(v) for v in spec)
    return False


def class_indices(spec: object, categories: Sequence[str] | None, what: str = "class") -> object:
    """``spec`` with every class name replaced by its index (nesting kept)."""
    if isinstance(spec, (list, tuple)):
        return [class_indices(v, categories, what) for v in spec]
    if isinstance(spec, str):
        return class_index(spec, categories, what)
    return spec
