"""``classcontrast reproduce`` configuration: one TOML file for the whole suite.

```toml
[run]                       # defaults for every experiment
threads = 1                 # torch threads per process (optional; fixed => identical numbers under torchrun)
device = "cpu"
batch_size = 16
seed = 0

[[experiment]]
kind = "perturbation"       # perturbation | masking | figures | norm_logit | faithfulness
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

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = {"perturbation", "masking", "figures", "norm_logit", "faithfulness"}
COMMON = {"kind", "name", "model", "weights", "num_classes", "data", "limit", "batch_size", "seed", "device",
          "preprocess"}
OPTIONS = {
    "perturbation": {"contrasts", "epsilons", "steps"},
    "masking": {"methods", "baselines", "modes", "rule", "threshold", "below", "sigma", "layer"},
    "figures": {"methods", "layer", "threshold", "images"},
    "norm_logit": set(),
    "faithfulness": {"methods", "contrasts", "baselines", "scores", "fractions", "layer", "road_noise",
                     "method_options"},
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
        if "method_options" in merged:
            _check_method_options(p, i, kind, merged)
        name = str(merged.get("name") or f"{kind}-{merged.get('model', 'efficientnet_lite0').replace(':', '_')}")
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
