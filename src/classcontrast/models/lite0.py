"""EfficientNet-Lite0, -Lite1 and -Lite2, written out with the module names of timm's ``tf_efficientnet_lite*``.

Lite0 is the embedded default model; Lite1 and Lite2 are the same family scaled (wider and deeper, larger
inputs). timm builds the same network, but importing timm (and the torchvision
it imports) costs about two seconds before any work; this file imports torch only, so
``classcontrast explain photo.jpg`` starts at once. The state dict has timm's keys and shapes, and
the test suite checks that this network and timm's compute the same logits.

Architecture (Tan & Le 2019, "Lite" variant): TensorFlow "same" padding for strided convolutions,
BatchNorm (ε = 1e-3) fused with ReLU6, no squeeze-excitation, a 1280-channel 1×1 head.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

# (block kind, repeats, kernel, stride, expansion, output channels) per stage
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320))
# name -> (width multiplier, depth multiplier, input size): timm's tf_efficientnet_lite0/1/2; images are resized
# to size × 256/224 and centre-cropped (bicubic), as for Lite0
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260)}


def _channels(channels: int, width: float) -> int:
    """timm's ``round_channels``: ``channels × width`` to a multiple of 8, never more than 10% below it."""
    if width == 1.0:
        return channels
    value = channels * width
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


def _repeats(stage: int, repeats: int, depth: float) -> int:
    """Blocks of a stage: ``⌈repeats × depth⌉``, the first and last stage kept (the Lite models' fixed ends)."""
    return repeats if stage in (0, len(STAGES) - 1) else math.ceil(repeats * depth)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (asymmetric when needed), computed per input size."""

    def forward(self, x: Tensor) -> Tensor:
        ph = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        pw = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride > 1:
        return Conv2dSame(cin, cout, kernel, stride, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by an activation (ReLU6 or none), as timm's ``BatchNormAct2d``."""

    def __init__(self, channels: int, act: bool = True) -> None:
        super().__init__(channels, eps=1e-3)
        self.drop = nn.Identity()
        self.act: nn.Module = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(super().forward(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise conv → BN-ReLU6 → pointwise conv → BN (the first stage)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.aa = nn.Identity()
        self.se = nn.Identity()
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))
        return self.drop_path(out) + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Pointwise expansion → depthwise conv → pointwise projection, each with BN (MBConv)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.aa = nn.Identity()
        self.se = nn.Identity()
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(self.se(self.aa(out))))
        return self.drop_path(out) + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite for ImageNet (1000 classes), inputs normalised with mean = std = 0.5: channels scaled by
    ``width`` and blocks by ``depth`` (Lite0: 1, 1; Lite1: 1, 1.1; Lite2: 1.1, 1.2), stem and head fixed."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        self.conv_stem = _conv(3, 32, 3, 2)
        self.bn1 = BatchNormAct2d(32)
        stages, cin = [], 32
        for index, (kind, repeats, kernel, stride, expansion, cout) in enumerate(STAGES):
            blocks: list[nn.Module] = []
            cout = _channels(cout, width)
            for i in range(_repeats(index, repeats, depth)):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparableConv(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, 1280, 1)
        self.bn2 = BatchNormAct2d(1280)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return self.classifier(self.global_pool(x).flatten(1))


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (the embedded default), 224×224 inputs."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(num_classes)
