"""A model with everything needed to explain it: preprocessing and class names."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from PIL import Image
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..explanation import Explanation


class Normalize(nn.Module):
    """Channel-wise (x - mean) / std as a module, on the input's device and dtype; ``spatial``: the inputs'
    spatial dimensions after the channel (2 for images (C, H, W) and batches of them, 3 for clips (C, T, H, W)
    and volumes)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], spatial: int = 2) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.spatial = spatial

    def _shaped(self, values: tuple[float, ...], x: Tensor) -> Tensor:
        return torch.tensor(values, dtype=x.dtype, device=x.device).reshape(-1, *([1] * self.spatial))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self._shaped(self.mean, x)) / self._shaped(self.std, x)

    def inverse(self, x: Tensor) -> Tensor:
        """Back to pixel space [0, 1]."""
        return x * self._shaped(self.std, x) + self._shaped(self.mean, x)


@runtime_checkable
class Undoable(Protocol):
    """A preprocessing whose geometry can be undone (a letterbox): maps (..., H, W) on the model's input back on the
    user's image of ``height`` × ``width`` (``nearest`` for masks), and boxes (x0, y0, x1, y1) with them."""

    def undo(self, maps: Tensor, height: int, width: int, nearest: bool = False) -> Tensor: ...

    def undo_box(self, box: list[float], height: int, width: int) -> list[float]: ...


def binary_names(categories: Sequence[str]) -> list[str]:
    """Class names for the logits: a one-output model's one name ``X`` becomes ``["not X", "X"]`` (its output
    is read as the binary logits $[0, y]$, see `classcontrast.outputs`); other lists are kept."""
    names = list(categories)
    return [f"not {names[0]}", names[0]] if len(names) == 1 else names


@dataclass
class ModelBundle:
    """A loaded model with what it takes to explain it: the network in eval mode and the names of the classes its
    logits score, for any model the library explains — an image classifier, a multi-label head, a segmenter, a
    detector (torchvision, DETR, YOLO), a zero-shot CLIP tower, a video or volume network, a vision-language model's
    candidate answers — as `load_model` returns it from the family's adapter (`classcontrast.models.registry`).

    ``preprocess`` maps a PIL image (a clip's frames, a volume) to a [0, 1] tensor (resize, crop, letterbox);
    ``normalize`` maps that to the model's input space; ``transform`` does both. ``layer`` is the bundle's CAM
    layer for calls that name none; ``head`` how its logits become class probabilities (softmax over the classes,
    or sigmoid: each class its own decision); ``frames`` a video network's clip length; ``read`` how the family
    reads its image files; ``info`` where the weights came from (provenance in saved results).
    """

    model: nn.Module
    preprocess: Callable[[Any], Tensor]  # a PIL image (a video network's: a clip tensor) -> a [0, 1] tensor
    normalize: Normalize
    categories: list[str]
    name: str = "model"
    info: dict[str, object] = field(default_factory=dict)
    layer: str | None = None  # the CAM layer used when a call names none (None: the automatic default)
    head: str = "softmax"  # "sigmoid" for a multi-label head: each class its own decision
    frames: int | None = None  # a video classifier: the frames per clip it takes (a clip is read with that many)
    # how the model's image files are read (None: `classcontrast.data.images.load_image`, alpha composited on white);
    # a family whose own tools read files otherwise gives its reader (YOLO: as Ultralytics' predictor does)
    read: Callable[[str | os.PathLike[str]], Image.Image] | None = None

    def __post_init__(self) -> None:
        self.categories = binary_names(self.categories)

    def transform(self, image: Image.Image | Tensor) -> Tensor:
        """PIL image -> normalised (C, H, W) model input (a video classifier's: a clip (C, T, H, W) in [0, 1] ->
        its (C, T, h, w) input)."""
        x: Tensor = self.normalize(self.preprocess(image))
        return x

    def read_image(self, path: str | os.PathLike[str]) -> Image.Image:
        """An image file as this model's own tools read it (`read`), by default `classcontrast.load_image`."""
        if self.read is not None:
            return self.read(path)
        from ..data.images import load_image

        return load_image(path)

    @property
    def one_size_per_image(self) -> bool:
        """Whether each image keeps its own size through the preprocessing (no crop to a common size), so that
        images are batched one at a time."""
        return getattr(self.preprocess, "crop", 0) is None

    @property
    def undoes_preprocessing(self) -> bool:
        """Whether maps on the model's input can be put back on the user's image (a letterbox: its padding cropped
        off, the rest resized back); a resize and crop cannot, and maps stay at the model's input size."""
        return isinstance(self.preprocess, Undoable)

    def on_user_image(self, explanation: Explanation, height: int, width: int) -> Explanation:
        """One input's explanation on the user's image of ``height`` × ``width`` (its maps, its objects' boxes and
        masks) when the preprocessing can be undone (`undoes_preprocessing`); otherwise the explanation as it is."""
        if not isinstance(self.preprocess, Undoable):
            return explanation
        return explanation.onto(self.preprocess.undo, self.preprocess.undo_box, height, width)

    def pixels_on_user_image(self, pixels: Tensor, height: int, width: int) -> Tensor:
        """The model's [0, 1] input pixels (C, H, W) on the user's image of ``height`` × ``width`` when the
        preprocessing can be undone (`undoes_preprocessing`); otherwise as they are."""
        return self.preprocess.undo(pixels, height, width) if isinstance(self.preprocess, Undoable) else pixels

    def pixel_model(self) -> nn.Module:
        """The model taking [0, 1] pixel images (normalisation inside the forward pass)."""
        return nn.Sequential(self.normalize, self.model)

    def to(self, device: str | torch.device) -> ModelBundle:
        self.model.to(device)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.categories)
