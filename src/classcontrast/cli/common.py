"""Shared command-line helpers: devices, progress bars, one-line errors and warnings (torch loaded on use)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from ..errors import ClassContrastError
from ..text import printable

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _click_errors  # type: ignore[no-redef]

_NoArgsIsHelp = getattr(_click_errors, "NoArgsIsHelpError", ())
_Abort = getattr(_click_errors, "Abort", None) or __import__("typer").Abort

class _PlainConsole(Console):
    """rich's console for our output, printing text as text: no markup (``[bold]`` in a class or file
    name stays as written), no emoji codes, and control characters (escape sequences) shown escaped."""

    def __init__(self) -> None:
        super().__init__(stderr=False, markup=False, emoji=False, highlight=False)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Text is printed as written, never wrapped at the console's width (a markdown table piped to a file kept
        its rows whole only at a terminal: rich wraps at 80 columns elsewhere); rich's tables fit the width."""
        if all(isinstance(o, str) for o in objects):
            kwargs.setdefault("soft_wrap", True)
        super().print(*(printable(o, lines=True) if isinstance(o, str) else o for o in objects), **kwargs)


console = _PlainConsole()


class _ErrorConsole(_PlainConsole):
    """The same, on stderr: progress bars, which go to a terminal only (never into a piped run's output)."""

    def __init__(self) -> None:
        Console.__init__(self, stderr=True, markup=False, emoji=False, highlight=False)


err_console = _ErrorConsole()


def resolve_device(device: str) -> Any:
    """``auto`` picks CUDA when available; anything else must be a valid torch device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ClassContrastError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClassContrastError(f"device {device!r} requested but CUDA is not available")
    return dev


def _bars(disable: bool, transient: bool = False) -> Any:
    """rich's progress display on stderr, at a terminal only: the time left while running, the time taken when
    done (not a remaining 0:00:00 that reads as an elapsed time)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(elapsed_when_finished=True), console=err_console, transient=transient,
                    disable=disable or not err_console.is_terminal)


@contextmanager
def progress_tasks(disable: bool = False) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """One progress display for several phases; yields ``task(label, total)`` -> ``advance(n)``."""
    with _bars(disable) as bar:

        def task(label: str, total: int | None) -> Callable[[int], None]:
            t = bar.add_task(printable(label), total=total)
            return lambda n: bar.advance(t, n)

        yield task


@contextmanager
def progress_bar(total: int | None, label: str, disable: bool = False) -> Iterator[Callable[[int], None]]:
    """A progress bar; yields ``advance(n)``."""
    with progress_tasks(disable) as task:
        yield task(label, total)


class RunProgress:
    """``explain``'s progress on stderr at a terminal, shown once a run has taken more than ``after`` seconds: per
    method, its batches done, and the model passes of the current call (`classcontrast.progress`: every forward and
    backward pass, path point, noisy copy or perturbed batch) — a long run is never silent. ``quiet``: nothing."""

    def __init__(self, methods: Sequence[str], batches: int, quiet: bool = False, after: float = 2.0) -> None:
        import time

        self.bar = _bars(quiet)
        self.methods, self.batches, self.after = list(methods), batches, after
        self.start, self.clock, self.shown = time.monotonic(), time.monotonic, False
        self.tasks: dict[str, Any] = {}
        self.passes = 0

    def _show(self) -> None:
        if not self.shown and self.clock() - self.start >= self.after:
            self.bar.start()
            self.shown = True

    def __enter__(self) -> RunProgress:
        self.tasks = {m: self.bar.add_task(m, total=self.batches) for m in self.methods}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            self.bar.stop()

    @contextmanager
    def method(self, name: str) -> Iterator[None]:
        """One `explain` call of method ``name`` on one batch: its passes counted as they happen."""
        from ..progress import reporting

        self.passes = 0

        def tick() -> None:
            self.passes += 1
            self.bar.update(self.tasks[name], description=f"{name} (pass {self.passes})", refresh=self.shown)
            self._show()

        with reporting(tick):
            yield
        self.bar.update(self.tasks[name], advance=1, description=name)
        self._show()


@contextmanager
def shard_progress(shard: Any) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress of a run sharded by torchrun (``shard``: a `Dist`), shown
    by the main process: yields ``progress(phase, total)`` -> ``advance(n)``, each process's count scaled
    by the number of processes (the whole run's progress, estimated from the main one)."""
    with progress_tasks(disable=not shard.main) as task:

        def progress(phase: str, total: int) -> Callable[[int], None]:
            advance = task(phase, total)
            return lambda n: advance(n * shard.world)

        yield progress


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    sys.stderr.write(f"warning: {printable(str(message))}\n")


def _flags_without_type() -> None:
    """Help lists on/off flags (``--relu/--no-relu``, ``--help``) without a ``<bool>`` value type: they
    take no value (typer >= 0.2x prints one for every boolean option)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_classcontrast", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._classcontrast = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def run_cli(app: Any, argv: Sequence[str]) -> None:
    """Run a typer app. Bad input (a ClassContrastError, or an unknown option / bad option value)
    becomes a one-line message on stderr and exit code 2; warnings are one line too."""
    warnings.showwarning = _one_line_warning
    _flags_without_type()
    console.quiet = False  # a command's --quiet lasts for its own run
    try:
        code = app(args=list(argv), prog_name="classcontrast", standalone_mode=False)
    except _NoArgsIsHelp:  # `classcontrast` or `classcontrast evaluate` alone: typer has printed the help
        sys.exit(0)
    except _click_errors.UsageError as e:  # unknown option, bad option value, missing argument
        path = e.ctx.command_path if e.ctx is not None else "classcontrast"
        sys.stderr.write(f"error: {' '.join(e.format_message().split())} ({path} --help lists the options)\n")
        sys.exit(2)
    except _Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except ClassContrastError as e:
        sys.stderr.write(f"error: {printable(str(e))}\n")  # one line, never wrapped, names shown as text
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
