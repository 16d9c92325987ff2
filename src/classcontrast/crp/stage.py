"""A batch of decoded images turned into the atlas' relevance rows: the callable class Ray Data's ``map_batches`` runs
in its workers (the model loaded once per worker), which the local engine calls in-process too. Nothing here imports
Ray."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ClassContrastError
from ..scale.stage import IMAGE_COLUMNS, ModelStage, by_size, column_value


class Relevance(ModelStage):
    """Each image's channel relevances at ``layer`` for class ``target`` under ``contrast`` (`concepts` without
    heatmaps), one row per image: its metadata columns, ``predicted``, ``score`` (the contrast's value), ``stake``
    (the probability that it is the target or the foil: `classcontrast.crp.atlas`) and ``relevance`` (C floats).

    ``model``: a `load_model` spec, a factory or a bundle (as `classcontrast.scale.stage.Explain`'s); a batch in Ray
    Data's numpy format with an ``image`` column of uint8 arrays (H × W grey or H × W × 3), which go through the
    model's own preprocessing."""

    def __init__(self, model: Any, target: int, contrast: Any, layer: str, method: str = "lrp", *,
                 device: str | None = None, weights: str | None = "DEFAULT") -> None:
        super().__init__(model, device, weights)
        self.target, self.contrast, self.layer, self.method = target, contrast, layer, method

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        """The batch's rows as a pyarrow Table, in the batch's order."""
        import pyarrow as pa
        import torch
        from PIL import Image

        from ..evaluation.runner import model_device

        if "image" not in batch:
            raise ClassContrastError(f"the batch has no 'image' column (columns: {', '.join(batch)})")
        xs = [self.bundle.transform(Image.fromarray(np.asarray(a, dtype=np.uint8))) for a in batch["image"]]
        device = model_device(self.bundle.model)
        rows: list[dict[str, Any]] = [{} for _ in xs]
        for group in by_size(xs):
            for i, row in zip(group, self.rows(torch.stack([xs[i] for i in group]).to(device)), strict=True):
                rows[i] = {**{k: column_value(k, batch[k][i]) for k in IMAGE_COLUMNS if k in batch}, **row}
        return pa.Table.from_pylist(rows)

    def rows(self, x: Any) -> list[dict[str, Any]]:
        """The relevance fields of each input of the batch ``x``."""
        from .relevance import concepts

        c = concepts(self.bundle, x, self.contrast, [self.target] * len(x), layer=self.layer, method=self.method,
                     heatmaps=False)
        p = c.logits.detach().double().softmax(1).cpu()
        foil = getattr(self.contrast, "foil", None)
        pair = [self.target] + ([int(foil)] if isinstance(foil, (int, np.integer)) else [])
        stake, predicted = p[:, pair].sum(1).tolist(), c.logits.argmax(1).tolist()
        scores, relevance = c.scores[:, 0].double().cpu().tolist(), c.relevance[:, 0].float().cpu()
        return [{"predicted": predicted[i], "score": scores[i], "stake": stake[i], "relevance": relevance[i].tolist()}
                for i in range(len(x))]


class ReadAndRelevance(Relevance):
    """`Relevance` reading each row's image in the worker (`classcontrast.scale.run.read_images`)."""

    def __call__(self, batch: Any) -> Any:
        from ..scale.run import read_images

        return super().__call__(read_images(batch))


__all__ = ["ReadAndRelevance", "Relevance"]
