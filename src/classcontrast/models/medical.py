"""MONAI's 3-D networks as ModelBundles (``monai:<network>``): classifiers and segmenters of volumes
(B, C, D, H, W), the values of a scan as stored (no resizing, no normalisation). MONAI is an optional extra
(``pip install "classcontrast[medical]"``), imported only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..errors import ClassContrastError, did_you_mean
from .bundle import ModelBundle, Normalize
from .registry import Family, register_family
from .weights import load_into, load_state

# name -> builder(in_channels, out_channels), MONAI's defaults for 3-D as its tutorials use them
NETWORKS: dict[str, Callable[[Any, int, int], nn.Module]] = {
    "densenet121": lambda m, i, o: m.DenseNet121(spatial_dims=3, in_channels=i, out_channels=o),
    "unet": lambda m, i, o: m.UNet(spatial_dims=3, in_channels=i, out_channels=o, channels=(16, 32, 64, 128, 256),
                                   strides=(2, 2, 2, 2), num_res_units=2),
    "segresnet": lambda m, i, o: m.SegResNet(spatial_dims=3, in_channels=i, out_channels=o),
    "swinunetr": lambda m, i, o: m.SwinUNETR(in_channels=i, out_channels=o, feature_size=48, spatial_dims=3),
}
# the segmenters' spatial sizes must be multiples of their total downsampling (their skip connections join
# levels of equal size); the DenseNet pools to one value and takes any size
MULTIPLE = {"unet": 16, "segresnet": 8, "swinunetr": 32}


class VolumePreprocess:
    """A volume (C, D, H, W) as the model takes it: as stored (the scan's own values and voxel grid); for a
    network whose sizes must be multiples of ``multiple``, another size is a one-line error saying how to pad."""

    def __init__(self, name: str = "", multiple: int = 1) -> None:
        self.name, self.multiple = name, multiple

    def __call__(self, volume: Tensor) -> Tensor:
        if not isinstance(volume, Tensor) or volume.ndim != 4:
            raise ClassContrastError("a volume model takes volumes (C, D, H, W): cc.load_volume(path)[0]")
        size = tuple(volume.shape[1:])
        k = self.multiple
        if any(n % k for n in size):
            padded = "×".join(str(-(-n // k) * k) for n in size)
            raise ClassContrastError(
                f"{self.name} needs every spatial size to be a multiple of {k} (its downsampling levels); this volume "
                f"is {'×'.join(map(str, size))}: pad it to {padded} (MONAI's DivisiblePad(k={k}, method=\"end\") "
                "keeps the scan's affine) or crop it")
        return volume.float()

    def __repr__(self) -> str:
        return f"VolumePreprocess(multiple={self.multiple})" if self.multiple > 1 else "VolumePreprocess()"


def load_monai(name: str, weights: Any, num_classes: int | None, in_channels: int = 1) -> ModelBundle:
    """``monai:<network>`` (densenet121, unet, segresnet, swinunetr; any case) with ``num_classes`` outputs (2
    unless given) on ``in_channels``-channel volumes; ``weights`` a state dict's path or None (random, seeded).
    MONAI's networks ship without weights: ``DEFAULT`` is a one-line error saying so."""
    try:
        import monai.networks.nets as nets
    except ImportError as e:
        raise ClassContrastError("monai: models need MONAI: pip install 'classcontrast[medical]'") from e
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETWORKS:
        raise ClassContrastError(f"unknown MONAI network {name!r}{did_you_mean(key, NETWORKS)} (choose "
                                 f"{', '.join(NETWORKS)})")
    if weights == "DEFAULT":
        raise ClassContrastError(f"monai:{name} comes without weights: give --weights PATH (a state dict saved with "
                                 "torch.save) or --weights none (random initialisation)")
    n = num_classes or 2
    model = NETWORKS[key](nets, in_channels, n)
    if weights is not None:
        load_into(model, load_state(weights), str(weights))
    preprocess = VolumePreprocess(f"monai:{key}", MULTIPLE.get(key, 1))
    return ModelBundle(model.eval(), preprocess, Normalize((0.0,) * in_channels, (1.0,) * in_channels, spatial=3),
                       [f"class {i}" for i in range(n)], f"monai:{key}")


register_family(Family(
    order=40,
    name="monai", prefix="monai", spec="monai:<network>", extra="medical",
    summary="MONAI's 3-D classifiers and segmenters of volumes (densenet121, unet, segresnet, swinunetr)",
    load=load_monai))

__all__ = ["MULTIPLE", "NETWORKS", "VolumePreprocess", "load_monai"]
