"""Command-line conventions, without importing torch (``classcontrast --help`` must answer at once).

One rule for every command: an option that takes several values takes them space-separated
(``--contrast original weighted``); commas work too (``--contrast original,weighted``), and so does
repeating the option. Values after the first are taken while they look like values of that option,
so image paths after ``--method gradcam`` stay positional.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..text import spelling
from . import manifest

# The registries' names (classcontrast.METHODS / CONTRASTS), from the generated manifest (no torch)
METHOD_NAMES = tuple(manifest.METHODS)
CONTRAST_NAMES = tuple(manifest.CONTRASTS)
BASELINE_NAMES = ("blur", "zeros", "mean", "road")
SCORE_NAMES = ("probability", "logit", "contrast")
METHODS_HELP = f"One or more of: {', '.join(METHOD_NAMES)}"
CONTRASTS_HELP = f"One or more of: {', '.join(CONTRAST_NAMES)}"


def _all(ok: Callable[[str], bool]) -> Callable[[str], bool]:
    """A token is a value when every comma-separated part of it is."""
    return lambda token: all(ok(part) for part in token.split(",") if part) and token.strip(",") != ""


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _any(text: str) -> bool:
    return True


def _known(names: Iterable[str]) -> Callable[[str], bool]:
    known = set(names)
    return lambda text: text.lower() in known


_METHODS = _all(lambda text: spelling(text) in manifest.METHOD_SPELLINGS)
_CONTRASTS = _all(_known(CONTRAST_NAMES))
_BASELINES = _all(_known(BASELINE_NAMES))
_SCORES = _all(_known(SCORE_NAMES))
_NUMBERS = _all(_number)
_INDICES = _all(lambda v: v.lstrip("-").isdigit())  # class names continue with commas: --target "tiger cat",cup

# command -> its multi-value options -> does a following token continue the option's values? Per
# command, because one name can be a list in one command and a single value in another (``--steps``:
# perturbation's iteration counts, Integrated Gradients' path points in ``explain``); a test keeps
# each table equal to the command's list options.
MULTI: dict[str, dict[str, Callable[[str], bool]]] = {
    "explain": {"--method": _METHODS, "--methods": _METHODS, "--contrast": _CONTRASTS, "--contrasts": _CONTRASTS,
                "--target": _INDICES, "--region": _INDICES, "--classes": _any, "--answers": _any},
    "evaluate": {"--method": _METHODS, "--methods": _METHODS, "--contrast": _CONTRASTS, "--contrasts": _CONTRASTS,
                 "--baseline": _BASELINES, "--baselines": _BASELINES, "--score": _SCORES, "--scores": _SCORES,
                 "--epsilon": _NUMBERS, "--epsilons": _NUMBERS, "--steps": _NUMBERS, "--sigma": _NUMBERS,
                 "--fractions": _NUMBERS, "--data": _any},
    "explain-dataset": {"--method": _METHODS, "--methods": _METHODS, "--contrast": _CONTRASTS,
                        "--contrasts": _CONTRASTS, "--target": _INDICES, "--foil": _any},
    "audit": {"--method": _METHODS, "--methods": _METHODS, "--classes": _any, "--answers": _any},
    "train": {"--milestones": _NUMBERS},
    "serve": {"--model": _any},
}


def command_of(argv: Sequence[str]) -> str | None:
    """The command a command line runs (its first token that is not an option)."""
    return next((tok for tok in argv if not tok.startswith("-")), None)


def expand_multi_options(argv: Sequence[str], multi: dict[str, Callable[[str], bool]] | None = None) -> list[str]:
    """Let ``--contrast original weighted`` mean ``--contrast original --contrast weighted``.

    The first token after a multi-value option is always its value; following tokens are taken as
    more values while ``multi[option](token)`` says they are valid values. ``multi``: the command's
    table in `MULTI` unless given.
    """
    if multi is None:
        multi = MULTI.get(command_of(argv) or "", {})
    out: list[str] = []
    current: str | None = None
    for tok in argv:
        if tok == "--":
            current = None
            out.append(tok)
            continue
        if tok.startswith("-") and not _number(tok):
            current = tok if tok in multi else None
            out.append(tok)
            continue
        if current is not None and out[-1] != current and multi[current](tok):
            out.extend([current, tok])
            continue
        if current is not None and out[-1] == current:
            out.append(tok)
            continue
        current = None
        out.append(tok)
    return out


def split_values(values: Sequence[str] | None) -> list[str]:
    """The values of a multi-value option, commas split: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for text in values or () for v in str(text).split(",") if v.strip()]


def split_numbers(values: Sequence[str] | None, option: str) -> list[float]:
    """Numbers of a multi-value option; a bad one is a one-line error naming the option."""
    from ..errors import ClassContrastError

    out = []
    for v in split_values(values):
        try:
            out.append(float(v))
        except ValueError as e:
            raise ClassContrastError(f"{option} takes numbers (space- or comma-separated), got {v!r}") from e
    return out


def method_names(values: Sequence[str] | None) -> list[str]:
    """The methods a multi-value ``--method`` names, each by its registered name (any spelling the registry accepts:
    ``Grad-CAM++``, ``GradCAMPlusPlus``, Captum's ``saliency``); a misspelling is one line, before torch loads."""
    names = split_values(values)
    check_names(names)
    return [manifest.METHOD_SPELLINGS[spelling(n)] for n in names]


def check_names(methods: Sequence[str] = (), contrasts: Sequence[str] = ()) -> None:
    """Misspelled method and contrast names are one line before torch is imported (the built-in names are known
    here: `METHOD_NAMES` and their spellings, `CONTRAST_NAMES`), with the nearest names suggested."""
    from ..errors import ClassContrastError, did_you_mean

    for name in methods:
        if spelling(name) not in manifest.METHOD_SPELLINGS:
            raise ClassContrastError(f"unknown method {name!r}{did_you_mean(name, METHOD_NAMES)} (methods: "
                                     f"{', '.join(METHOD_NAMES)})")
    for name in contrasts:
        if name.lower() not in CONTRAST_NAMES:
            raise ClassContrastError(f"unknown contrast {name!r}{did_you_mean(name, CONTRAST_NAMES)} (contrasts: "
                                     f"{', '.join(CONTRAST_NAMES)}; a foil: --foil NAME)")
