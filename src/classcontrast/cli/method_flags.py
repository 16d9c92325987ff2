"""The methods' own options as command-line flags, made from their declarations (the generated `manifest`: each
option's kind and help, declared once on its method), for every command that runs methods. Adding a method, or an
option to one, adds no command-line code: regenerate the manifest (``python tools/manifest.py``). No torch here
until a command runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import typer

from . import manifest

KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "sizes": str}


def flag(name: str) -> str:
    """An option's flag: ``internal_batch_size`` -> ``--internal-batch-size``."""
    return "--" + name.replace("_", "-")


def _option(name: str, spec: dict[str, Any]) -> Any:
    decls = [f"{flag(name)}/--no-{name.replace('_', '-')}"] if spec.get("negatable") else [flag(name)]
    return typer.Option(None, *decls, help=spec["help"], show_default=False)


def with_method_options(command: Callable[..., None], exclude: Iterable[str] = ()) -> Callable[..., None]:
    """``command`` (taking ``**options``) with a flag for every method option it does not declare itself or
    ``exclude``: what typer builds the command line from. The options given arrive in ``options`` (None: not
    given), for `method_flags`."""
    return _with(command, manifest.METHOD_OPTIONS, exclude)


def _with(command: Callable[..., None], table: dict[str, dict[str, Any]], exclude: Iterable[str]
          ) -> Callable[..., None]:
    """``command`` with a flag for every option of ``table`` it does not have (see `with_method_options`)."""
    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in params} | set(exclude)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_option(name, spec),
                               annotation=KINDS[spec["type"]])
             for name, spec in table.items() if name not in taken]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in extra}}
    return wrapper


def with_family_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` (taking ``**options``) with a flag for every model family's own option (``--trust-remote-code``,
    ``--imgsz``...: registered by the families' adapters); the options given arrive in ``options``."""
    return _with(command, manifest.FAMILY_OPTIONS, ())


def sizes(text: str | None, option: str) -> int | tuple[int, ...] | None:
    """``--window 8`` -> 8, ``--window 3,8,8`` -> (3, 8, 8); anything else is a one-line error."""
    from ..errors import ClassContrastError

    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() for p in parts):
        raise ClassContrastError(f"{option} must be a whole number or whole numbers separated by commas, got {text!r}")
    return int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)


def method_flags(methods: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """The method options given on the command line (None = not given), as the methods take them: an unknown
    method, a flag none of the chosen methods has, or a value its method refuses is a one-line error naming the
    flag, before any work."""
    from .options import check_names

    check_names(methods)  # before torch is imported
    given = {k: v for k, v in options.items() if k in manifest.METHOD_OPTIONS and v is not None}
    given = {k: sizes(v, flag(k)) if manifest.METHOD_OPTIONS[k]["type"] == "sizes" else v for k, v in given.items()}
    from ..errors import ClassContrastError
    from ..methods import check_options, get_method, options_for

    check_options(methods, given, cli=True)
    for method in methods:
        mine = options_for(method, given)
        for name, value in mine.items():  # each flag alone: the error names it
            try:
                get_method(method, **{name: value})
            except ClassContrastError as e:
                raise ClassContrastError(f"{flag(name)} {value}: {e}") from e
        get_method(method, **mine)  # and together (a window and its stride)
    return given


__all__ = ["flag", "method_flags", "sizes", "with_family_options", "with_method_options"]
