"""classcontrast on Ray Data: ``ds.map_batches(Explain, fn_constructor_args=(...), concurrency=n)``.

```python
import ray
from classcontrast.ray import Explain

ds = ray.data.read_images("photos/", include_paths=True)
rows = ds.map_batches(Explain, fn_constructor_args=("efficientnet_lite0",),
                      fn_constructor_kwargs={"method": "gradcam", "contrasts": ("original", "weighted")},
                      concurrency=2, batch_size=16)
rows.write_parquet("explained/")
```

`Explain` (`classcontrast.scale.stage.Explain`) loads the model once per worker and returns one row per (image,
unit, target, contrast, method) carrying the image's other columns (`classcontrast.scale.table`). Importing this
module does not import Ray; `explain_dataset` runs a whole folder into resumable Parquet parts on either engine;
`audit` and `faithfulness` are `cc.audit` and `run_faithfulness` with their batches on Ray Data workers (this process
writes every file, so the results equal a local run's).
"""

from __future__ import annotations

from typing import Any

from .scale.run import DatasetRequest, explain_dataset
from .scale.stage import Explain
from .scale.workers import Workers, ray_session


def audit(model: Any, data: Any = None, out: Any = None, *, address: str | None = None, concurrency: int = 1,
          num_gpus: float = 0.0, **options: Any) -> Any:
    """`cc.audit` (`classcontrast.confusion.run.audit`, the same ``options``) with both phases' batches on
    ``concurrency`` Ray Data workers (``num_gpus`` each) of the cluster at ``address`` (None: ``RAY_ADDRESS``, else a
    local Ray): the predictions as a ``map_batches`` stage, the confusions counted here, then the shown pairs'
    maps; the same files and numbers as the local audit."""
    from .confusion.run import audit as run_audit

    return run_audit(model, data, out, workers=Workers("ray", address, concurrency, num_gpus), **options)


def faithfulness(model: Any, data: Any = None, *args: Any, address: str | None = None, concurrency: int = 1,
                 num_gpus: float = 0.0, **options: Any) -> dict[str, Any]:
    """`run_faithfulness` (`classcontrast.evaluation.faithfulness`, the same arguments) with its batches on Ray
    Data workers, as `audit`: the same rows and tables as a local run."""
    from .evaluation.faithfulness import run_faithfulness

    run: Any = run_faithfulness  # the positional arguments stop before ``workers``
    result: dict[str, Any] = run(model, data, *args, workers=Workers("ray", address, concurrency, num_gpus), **options)
    return result


__all__ = ["DatasetRequest", "Explain", "Workers", "audit", "explain_dataset", "faithfulness", "ray_session"]
