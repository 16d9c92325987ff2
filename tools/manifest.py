"""Write ``src/classcontrast/cli/manifest.py``: what the command line knows before torch is imported — the methods and
their options (declared once, on each method: `classcontrast.methods.declared_options`), the contrasts, the model
families and their own options (registered by their adapters: `classcontrast.models.registry`).

Run it after adding or changing a method, a contrast or a model family::

    python tools/manifest.py

A test (tests/test_manifest.py) fails while the file is stale, naming this command.
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "classcontrast" / "cli" / "manifest.py"
# the model families' table: data of the models package (the families' adapters register them), which the command
# line reads without importing torch — so that no generic module names a family
FAMILIES_TARGET = ROOT / "src" / "classcontrast" / "models" / "families.json"

HEADER = '''"""What the command line knows before torch is imported: the methods and their options, the contrasts —
generated from their registrations by ``python tools/manifest.py`` (do not edit; a test keeps it current) — and the
model families and their options, read from the models package's ``families.json`` (generated alike). Plain data."""

from __future__ import annotations

import json
from pathlib import Path

_FAMILIES = json.loads((Path(__file__).resolve().parents[1] / "models" / "families.json").read_text(encoding="utf-8"))
DEFAULT_MODEL: str = _FAMILIES["default_model"]
FAMILIES: tuple[dict[str, object], ...] = tuple(_FAMILIES["families"])
FAMILY_OPTIONS: dict[str, dict[str, str]] = _FAMILIES["family_options"]

'''


def _merge_kinds(kinds: set[str]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    if "str" in kinds:
        return "str"
    return "float" if kinds <= {"int", "float"} else "str"


def _shown(default: object) -> str:
    return "" if default is None or default is False or default == "" else f" ({default})"


def method_tables() -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, str]]]:
    """(method -> its options, option -> {kind, help}) from the methods' declarations."""
    import classcontrast as cc
    from classcontrast.methods import declared_options

    methods: dict[str, tuple[str, ...]] = {}
    per_option: dict[str, list[tuple[str, str, str, object]]] = {}
    for name in cc.METHODS:
        decls = declared_options(name)
        methods[name] = tuple(d.name for d in decls)
        for d in decls:
            per_option.setdefault(d.name, []).append((name, d.kind, d.help, d.default))
    options: dict[str, dict[str, str]] = {}
    for option, entries in sorted(per_option.items()):
        groups: dict[tuple[str, str], list[str]] = {}
        for method, _, text, default in entries:
            groups.setdefault((text, _shown(default)), []).append(method)
        text = "; ".join(f"{', '.join(ms)}: {h}{d}" for (h, d), ms in groups.items())
        options[option] = {"type": _merge_kinds({e[1] for e in entries}), "help": text}
        if options[option]["type"] == "bool" and any(e[3] is True for e in entries):
            options[option]["negatable"] = True  # on by default somewhere: --no-<option> turns it off
    return methods, options


def family_tables() -> tuple[list[dict[str, object]], dict[str, dict[str, str]]]:
    """(the families in order, option -> {kind, help}) from the model families' registrations."""
    from classcontrast.models.registry import FAMILIES

    families, options = [], {}
    for f in FAMILIES:
        families.append({"name": f.name, "spec": f.spec, "summary": f.summary, "extra": f.extra,
                         "options": [o.name for o in f.options]})
        for o in f.options:
            options[o.name] = {"type": o.type.__name__, "help": f"{f.spec}: {o.help}"}
    return families, options


def manifest_text() -> str:
    """The manifest module's text, as the registrations give it now."""
    import classcontrast as cc

    methods, options = method_tables()
    parts = [HEADER]
    from classcontrast.methods import spellings

    for name, value in (("METHODS", methods), ("METHOD_SPELLINGS", spellings()), ("CONTRASTS", tuple(cc.CONTRASTS)),
                        ("METHOD_OPTIONS", options)):
        parts.append(f"{name} = {pprint.pformat(value, width=116, sort_dicts=False)}\n\n")
    return "".join(parts).rstrip() + "\n"


def families_text() -> str:
    """``families.json``'s text: the default model, the families in order and their options."""
    import json

    from classcontrast.models import EMBEDDED

    families, family_options = family_tables()
    return json.dumps({"default_model": EMBEDDED, "families": families, "family_options": family_options},
                      indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    TARGET.write_text(manifest_text())
    FAMILIES_TARGET.write_text(families_text(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} and {FAMILIES_TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
