"""A small CNN trained on scikit-learn's real handwritten digits in a few seconds, as a ModelBundle."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

import classcontrast as cc
from classcontrast.data.sources import Sample, SampleSource
from classcontrast.models import ModelBundle, Normalize


class DigitsNet(nn.Module):
    """VGG-BN-like: Conv-BN-ReLU twice, pooling, fully connected layers. ``features.3`` is the last conv
    before BatchNorm, the counterpart of the study's vgg16_bn ``features.40``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_digits(epochs: int = 20, seed: int = 0) -> tuple[ModelBundle, SampleSource]:
    """Train on 1,300 digits; return the bundle and a source of the 497 held-out digits (labelled)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    images = (d.images / 16.0).astype(np.float32)
    train, test = order[:1300], order[1300:]
    torch.manual_seed(seed)
    model = DigitsNet()
    norm = Normalize((0.5,), (0.5,))
    x = norm(torch.from_numpy(images[train])[:, None])
    y = torch.from_numpy(d.target[train]).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(y), 128):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[i : i + 128]), y[i : i + 128])
            loss.backward()  # training, not an explanation
            opt.step()
    model.eval()
    bundle = ModelBundle(model, T.ToTensor(), norm, [str(i) for i in range(10)], "digits-cnn")
    samples = [
        Sample(f"digit{int(i)}", lambda i=i: Image.fromarray((images[i] * 255).astype(np.uint8), "L"), int(d.target[i]))
        for i in test
    ]
    return bundle, SampleSource(samples, "scikit-learn labels", "held-out digits")


def accuracy(bundle: ModelBundle, source: SampleSource) -> float:
    x = bundle.normalize(torch.stack([bundle.preprocess(s.load()) for s in source]))
    y = torch.tensor([s.label for s in source])
    with torch.no_grad():
        return float((bundle.model(x).argmax(1) == y).float().mean())


assert cc  # the public API is what the tests exercise
