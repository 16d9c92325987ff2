"""``yolo:<yaml or checkpoint>``: Ultralytics YOLO detection and segmentation models (the optional ``yolo`` extra;
Ultralytics is AGPL-3.0 and is imported only here, when such a model is asked for).

* ``yolo:yolov8n.yaml`` (any model yaml Ultralytics ships, or a path to one): the architecture with random weights
  (seeded), or with ``weights=`` a state dict loaded safely (``weights_only=True``);
* ``yolo:PATH.pt``: an Ultralytics checkpoint. It is a pickled model object — loading it can run code from the
  file — so it is loaded through Ultralytics' own loader only with ``trust_checkpoint=True``
  (``--trust-checkpoint``); otherwise a one-line error says so and how to give a state dict and its yaml.

The bundle letterboxes images as Ultralytics' predictor does (`classcontrast.models.preprocess.Letterbox`), its
head is sigmoid, its CAM layer the map every head level depends on (`classcontrast.units.yolo.yolo_layer`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError
from .bundle import ModelBundle, Normalize
from .preprocess import Letterbox
from .weights import load_into, load_state


def _ultralytics() -> Any:
    from ..units.yolo import import_ultralytics

    try:
        (tasks,) = import_ultralytics("ultralytics.nn.tasks")
    except ImportError as e:
        raise ClassContrastError("yolo: models need Ultralytics (AGPL-3.0): pip install 'classcontrast[yolo]'") from e
    return tasks


def load_yolo(spec: str, weights: str | os.PathLike[str] | None, num_classes: int | None,
              trust_checkpoint: bool = False) -> ModelBundle:
    """A YOLO detection / segmentation model as a bundle (see the module docstring)."""
    from ..units.yolo import is_yolo, yolo_layer

    tasks = _ultralytics()
    path = Path(spec)
    if path.suffix in (".pt", ".pth"):
        if not path.is_file():
            raise ClassContrastError(f"YOLO checkpoint not found: {path}")
        if not trust_checkpoint:
            raise ClassContrastError(f"{path} is an Ultralytics checkpoint, a pickled model: loading it runs code from "
                                     "the file. If you trust it, pass --trust-checkpoint (trust_checkpoint=True); or "
                                     "give its yaml and a state dict: --model yolo:MODEL.yaml --weights state.pt")
        try:
            model, _ = tasks.load_checkpoint(str(path))
        except Exception as e:  # a broken or foreign pickle: whatever Ultralytics raises, one line
            raise ClassContrastError(f"{path} is not an Ultralytics checkpoint ({type(e).__name__}: {e})") from e
    elif path.suffix in (".yaml", ".yml"):
        try:
            config = tasks.yaml_model_load(spec)
        except FileNotFoundError as e:
            raise ClassContrastError(f"no YOLO model yaml {spec!r} (Ultralytics ships yolov8n.yaml, yolo11n.yaml, "
                                     "...; or give a path)") from e
        task = tasks.guess_model_task(config)
        build = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel}.get(task)
        if build is None:
            raise ClassContrastError(f"{spec} is a YOLO {task} model: classcontrast explains detection and "
                                     "segmentation models (yolov8n.yaml, yolov8n-seg.yaml, yolo11n.yaml...)")
        model = build(config, nc=num_classes, verbose=False)
        if weights not in (None, "DEFAULT"):
            load_into(model, load_state(weights), str(weights))
    else:
        raise ClassContrastError(f"yolo:{spec}: give a model yaml (yolo:yolov8n.yaml) or a checkpoint (yolo:best.pt "
                                 "--trust-checkpoint)")
    if not is_yolo(model):
        raise ClassContrastError(f"yolo:{spec} is not a YOLO detection or segmentation model")
    names = getattr(model, "names", None) or {}
    n = model.model[-1].nc
    categories = [str(names.get(i, f"class {i}")) if isinstance(names, dict) else str(names[i]) for i in range(n)]
    stride = int(max(float(s) for s in model.stride)) if hasattr(model, "stride") else 32
    return ModelBundle(model.float().eval(), Letterbox(640, stride), Normalize((0.0,) * 3, (1.0,) * 3), categories,
                       f"yolo:{spec}", layer=yolo_layer(model), head="sigmoid")


__all__ = ["load_yolo"]
