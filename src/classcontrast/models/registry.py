"""Model families, registered by their adapters: how a model is named (``efficientnet_lite0``, ``torchvision:<arch>``,
``yolo:<yaml or .pt>``...), how it is loaded and which options only it takes. `classcontrast.models.load_model` is a
lookup here; the command line's model help and options come from these registrations (through the generated
manifest, `classcontrast.cli.manifest`). Each family is one adapter module under ``classcontrast.models`` that calls
`register_family` when imported. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClassContrastError, did_you_mean


@dataclass(frozen=True)
class FamilyOption:
    """An option only a family's loader takes: its type (``bool``: a flag), its help, its default."""

    name: str
    type: type
    help: str
    default: Any = None


@dataclass(frozen=True)
class Family:
    """A model family's adapter: models named ``<prefix>:<rest>`` (or one of ``names`` whole), loaded by ``load(rest,
    weights, num_classes, **options)`` into a `ModelBundle`; ``spec`` is how its names read in help, ``summary`` one
    line about it, ``extra`` the package extra it needs, ``options`` what only it takes."""

    name: str
    spec: str
    summary: str
    load: Callable[..., Any]
    prefix: str | None = None
    names: tuple[str, ...] = ()
    extra: str | None = None
    options: tuple[FamilyOption, ...] = field(default_factory=tuple)
    order: int = 50  # where the family is listed (help, errors): lowest first

    def takes(self, option: str) -> bool:
        return any(o.name == option for o in self.options)


FAMILIES: list[Family] = []


def register_family(family: Family) -> Family:
    """Add a model family (its adapter module calls this when imported); a family of the same name is replaced."""
    FAMILIES[:] = sorted([f for f in FAMILIES if f.name != family.name] + [family], key=lambda f: f.order)
    return family


def family_of(name: str) -> tuple[Family, str]:
    """(the family, the rest of the name) for a model name; an unknown name is one line listing the families."""
    for family in FAMILIES:
        if name in family.names:
            return family, name
        if family.prefix is not None and name.startswith(family.prefix + ":"):
            return family, name.split(":", 1)[1]
    known = [n for f in FAMILIES for n in f.names] + [f.prefix + ":" for f in FAMILIES if f.prefix]
    raise ClassContrastError(f"unknown model {name!r}{did_you_mean(name, known)}; use {_specs()}")


def _specs() -> str:
    specs = [f.spec for f in FAMILIES]
    return ", ".join(specs[:-1]) + f" or {specs[-1]}" if len(specs) > 1 else "".join(specs)


def check_family_options(family: Family, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given (not None, not False) that the family takes; another is one line naming who takes it."""
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    for option in given:
        if not family.takes(option):
            owners = [f.spec for f in FAMILIES if f.takes(option)]
            if owners:
                raise ClassContrastError(f"{option} is an option of {' and '.join(owners)} models, not of {name}")
            known = sorted({o.name for f in FAMILIES for o in f.options})
            raise ClassContrastError(f"unknown model option {option!r}{did_you_mean(option, known)} (the families' "
                                     f"options: {', '.join(known)})")
    return given


__all__ = ["FAMILIES", "Family", "FamilyOption", "check_family_options", "family_of", "register_family"]
