"""The typed result of `classcontrast.crp`: a layer's channels as concepts under one contrast, per image and
target, with rows for tables, files and answers (renderers read these, never the model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch import Tensor


@dataclasses.dataclass(frozen=True)
class Concepts:
    """Which channels of ``layer`` make each target win under ``contrast``.

    ``relevance`` (B, K, C): every channel's relevance for each image's K targets; ``channels`` (B, K, top): the
    channels of highest relevance, best first; ``heatmaps`` (B, K, top, *S): their conditional heatmaps at the
    input's size (unnormalised, signed); ``targets`` (B, K) and ``scores`` (B, K): the contrast's value; ``logits``
    (B, C) the model's."""

    relevance: Tensor
    channels: Tensor
    heatmaps: Tensor
    targets: Tensor
    scores: Tensor
    logits: Tensor
    contrast: str
    method: str
    layer: str
    categories: Sequence[str] | None = None

    @property
    def top_relevance(self) -> Tensor:
        """(B, K, top): the shown channels' relevances."""
        return self.relevance.gather(2, self.channels)

    @property
    def share(self) -> Tensor:
        """(B, K, top): each shown channel's share of the layer's relevance, $R_c / \\sum_{c'} |R_{c'}|$ (signed: a
        negative share speaks against the target; the shares' absolute values over all channels sum to 1)."""
        return self.top_relevance / self.relevance.abs().sum(2, keepdim=True).clamp_min(1e-300)

    def __getitem__(self, image: int) -> Concepts:
        """The concepts of one image (a batch of one)."""
        pick = slice(image, image + 1 if image != -1 else None)
        return dataclasses.replace(self, relevance=self.relevance[pick], channels=self.channels[pick],
                                   heatmaps=self.heatmaps[pick], targets=self.targets[pick], scores=self.scores[pick],
                                   logits=self.logits[pick])

    def rows(self, heatmaps: bool = True, arrays: str = "numpy", first: int = 0) -> list[dict[str, Any]]:
        """One plain record per (input, target, rank): ``input`` (from ``first``), ``target``, ``target_name``,
        ``contrast``, ``method``, ``layer``, ``score``, ``rank`` (0: the most relevant), ``channel``, ``relevance``,
        ``share`` and, with ``heatmaps``, the ``heatmap`` as a NumPy array (``arrays="list"``: nested lists)."""
        share, rel = self.share.double().cpu(), self.top_relevance.double().cpu()
        heat = self.heatmaps.detach().float().cpu() if heatmaps else None
        out = []
        b, k, top = self.channels.shape
        for i in range(b):
            for j in range(k):
                t = int(self.targets[i, j])
                for r in range(top):
                    record: dict[str, Any] = {
                        "input": first + i, "target": t,
                        "target_name": self.categories[t] if self.categories is not None else None,
                        "contrast": self.contrast, "method": self.method, "layer": self.layer,
                        "score": float(self.scores[i, j]), "rank": r, "channel": int(self.channels[i, j, r]),
                        "relevance": float(rel[i, j, r]), "share": float(share[i, j, r])}
                    if heat is not None:
                        a = heat[i, j, r].numpy()
                        record["heatmap"] = a.tolist() if arrays == "list" else a
                    out.append(record)
        return out

    def __repr__(self) -> str:
        b, k, top = self.channels.shape
        return (f"Concepts(method={self.method!r}, contrast={self.contrast!r}, layer={self.layer!r}, images={b}, "
                f"targets per image={k}, channels={self.relevance.shape[2]}, shown={top})")


__all__ = ["Concepts"]
