"""``classcontrast reproduce`` configuration: one TOML file for the whole suite.

```toml
[run]                       # defaults for every experiment
threads = 1                 # torch threads per process (optional; fixed => identical numbers under torchrun)
device = "cpu"
batch_size = 16
seed = 0

[[experiment]]
kind = "perturbation"       # perturbation | masking | figures | norm_logit | faithfulness | networks
name = "resnet18"           # output sub-folder (default: kind-model)
model = "torchvision:resnet18"
weights = "DEFAULT"         # or none, or a state-dict path; num_classes = 200 for a new head
data = "imagenet:/data/ILSVRC2012"   # omitted: the bundled photos
limit = 50000
epsilons = [0.001, 0.003]
steps = [1, 2, 10]
```
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = {"perturbation", "masking", "figures", "norm_logit", "faithfulness", "networks"}
COMMON = {"kind", "name", "model", "weights", "num_classes", "data", "limit", "batch_size", "seed", "device",
          "preprocess"}
OPTIONS = {
    "perturbation": {"contrasts", "epsilons", "steps"},
    "masking": {"methods", "baselines", "modes", "rule", "threshold", "below", "sigma", "layer"},
    "figures": {"methods", "layer", "threshold", "images"},
    "norm_logit": set(),
    "networks": {"models", "contrasts", "epsilons", "steps"},
    "faithfulness": {"methods", "contrasts", "baselines", "scores", "fractions", "layer", "road_noise",
                     "method_options"},
}


# Perturbation steps per setting: the study's largest is 10; a million would run for weeks
MAX_STEPS = 1000

# What each option's value must be: a check returning None when the value is right, or what it should be.
Check = Callable[[Any], "str | None"]


def _integer(low: int | None = None, high: int | None = None) -> Check:
    what = "an integer" if low is None else f"an integer of at least {low}" if high is None \
        else f"an integer from {low} to {high:,}"

    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low) \
            and (high is None or v <= high)
        return None if ok else what
    return check


def _number(low: float | None = None, high: float | None = None, open_low: bool = False) -> Check:
    if low is None:
        bounds = ""
    elif high is not None:
        bounds = f" in {'(' if open_low else '['}{low:g}, {high:g}]"
    else:
        bounds = f" greater than {low:g}" if open_low else f" of at least {low:g}"

    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
            and (low is None or (v > low if open_low else v >= low)) and (high is None or v <= high)
        return None if ok else f"a finite number{bounds}"
    return check


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _list(item: Check, what: str) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) > 0 and all(item(x) is None for x in v)
        return None if ok else f"a non-empty list of {what} (in [ ])"
    return check


def _either(*checks: Check, what: str) -> Check:
    return lambda v: None if any(c(v) is None for c in checks) else what


TYPES: dict[str, Check] = {
    "name": _text, "model": _text, "weights": _text, "num_classes": _integer(1), "data": _text, "limit": _integer(1),
    "batch_size": _integer(1), "seed": _integer(0), "device": _text, "preprocess": _text,
    "contrasts": _list(_text, "names"), "epsilons": _list(_number(0, open_low=True), "positive numbers"),
    "steps": _list(_integer(1, MAX_STEPS), f"whole numbers from 1 to {MAX_STEPS:,}"), "methods": _list(_text, "names"),
    "baselines": _list(_text, "names"), "modes": _list(_text, "names"), "rule": _text,
    "threshold": _number(0, 1), "below": _flag,
    "sigma": _either(_number(0, open_low=True), lambda v: None if isinstance(v, list) and len(v) == 2 and all(
        _number(0, open_low=True)(x) is None for x in v) else "", what="a positive number or [LO, HI]"),
    "layer": _either(_text, _integer(), what="a layer name or a block index"), "images": _integer(1),
    "scores": _list(_text, "names"), "fractions": _list(_number(0, 1, open_low=True), "numbers in (0, 1]"),
    "road_noise": _number(0), "models": _list(_text, "model names"),
}


@dataclass
class Experiment:
    kind: str
    name: str
    model: str = "efficientnet_lite0"
    weights: str | None = "DEFAULT"
    num_classes: int | None = None
    data: str | None = None
    limit: int | None = None
    batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    preprocess: str = "model"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    path: Path
    text: str
    experiments: list[Experiment]
    threads: int | None = None  # torch threads per process: fix it for bit-identical numbers across launchers


def load_config(path: str | Path) -> Config:
    """Parse and validate a config; errors name the file and the experiment."""
    p = Path(path)
    if not p.is_file():
        raise ClassContrastError(f"config not found: {p}")
    text = p.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ClassContrastError(f"{p}: not valid TOML ({e})") from e
    run = raw.get("run", {})
    unknown_top = set(raw) - {"run", "experiment"}
    if unknown_top:
        raise ClassContrastError(f"{p}: unknown section(s) {sorted(unknown_top)}")
    experiments = []
    names: set[str] = set()
    for i, entry in enumerate(raw.get("experiment", [])):
        unknown_run = set(run) - COMMON - {"threads"}
        if unknown_run:
            raise ClassContrastError(f"{p}: [run] has unknown option(s) {sorted(unknown_run)}")
        merged = {**{k: v for k, v in run.items() if k in COMMON}, **entry}
        kind = merged.get("kind")
        if kind not in KINDS:
            raise ClassContrastError(f"{p}: experiment {i + 1} has kind {kind!r}; choose one of {sorted(KINDS)}")
        extra = set(merged) - COMMON - OPTIONS[kind]
        if extra:
            raise ClassContrastError(f"{p}: experiment {i + 1} ({kind}) has unknown option(s) {sorted(extra)}")
        for key, value in merged.items():
            wrong = TYPES[key](value) if key in TYPES else None
            if wrong:
                raise ClassContrastError(f"{p}: experiment {i + 1} ({kind}): {key} must be {wrong}, got {value!r}")
        _check_values(p, i, kind, merged)
        if "method_options" in merged:
            _check_method_options(p, i, kind, merged)
        name = str(merged.get("name") or f"{kind}-{merged.get('model', 'efficientnet_lite0').replace(':', '_')}")
        if name in {".", ".."} or "/" in name or "\\" in name or "\0" in name or len(name.encode()) > 200:
            raise ClassContrastError(f"{p}: experiment {i + 1} ({kind}): name {name!r} must be a plain folder name "
                                     "(no '/', '\\' or '..'): it is written inside --out")
        if name in names:
            raise ClassContrastError(f"{p}: two experiments are named {name!r}; give each a distinct name")
        names.add(name)
        common = {k: merged[k] for k in COMMON - {"kind", "name"} if k in merged}
        experiments.append(Experiment(kind=kind, name=name, **common,
                                      options={k: merged[k] for k in OPTIONS[kind] if k in merged}))
    if not experiments:
        raise ClassContrastError(f"{p}: no [[experiment]] entries")
    threads = run.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ClassContrastError(f"{p}: [run] threads must be a positive integer")
    return Config(p, text, experiments, threads)


def _check_values(path: Path, i: int, kind: str, entry: dict[str, Any]) -> None:
    """Names the experiment uses (contrasts, methods, baselines, scores, preprocessing, device) are known,
    checked for every experiment before the first one runs."""
    from ..contrasts import get_contrast
    from ..evaluation.faithfulness import check_grid
    from ..methods import method_class
    from ..models import PREPROCESS

    try:
        for c in entry.get("contrasts", ()):
            get_contrast(c)
        for m in entry.get("methods", ()):
            method_class(m)
        if kind == "faithfulness":
            check_grid(entry.get("baselines", ("blur",)), entry.get("scores", ("probability",)),
                       entry.get("fractions", (1.0,)))
        if "preprocess" in entry and entry["preprocess"] not in PREPROCESS:
            raise ClassContrastError(f"unknown preprocess {entry['preprocess']!r}; "
                                     f"choose one of {', '.join(PREPROCESS)}")
        if "rule" in entry and entry["rule"] not in {"sign", "equal", "legacy"}:
            raise ClassContrastError(f"unknown rule {entry['rule']!r}; choose sign, equal or legacy")
        if "device" in entry and entry["device"] != "auto":  # whether it is present: checked when the run starts
            import torch

            try:
                torch.device(entry["device"])
            except RuntimeError as e:
                raise ClassContrastError(f"unknown device {entry['device']!r}") from e
    except ClassContrastError as e:
        raise ClassContrastError(f"{path}: experiment {i + 1} ({kind}): {e}") from e


def _check_method_options(path: Path, i: int, kind: str, entry: dict[str, Any]) -> None:
    """``method_options`` is a table of options that the experiment's methods have (one line, before any run)."""
    from ..evaluation.faithfulness import METHODS
    from ..methods import check_options

    options = entry["method_options"]
    if not isinstance(options, dict):
        raise ClassContrastError(f"{path}: experiment {i + 1} ({kind}): method_options must be a table, "
                                 "e.g. method_options = { steps = 16 }")
    try:
        check_options(entry.get("methods", METHODS), options)
    except ClassContrastError as e:
        raise ClassContrastError(f"{path}: experiment {i + 1} ({kind}): {e}") from e
