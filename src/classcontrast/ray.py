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
module does not import Ray; `explain_dataset` runs a whole folder into resumable Parquet parts on either engine.
"""

from __future__ import annotations

from .scale.run import DatasetRequest, explain_dataset, ray_session
from .scale.stage import Explain

__all__ = ["DatasetRequest", "Explain", "explain_dataset", "ray_session"]
