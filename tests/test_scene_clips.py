"""Real handwritten digits (scikit-learn's ``load_digits``) in clips and volumes: the digit is present in a
few frames (slices) only, noise elsewhere, and a small 3-D CNN trained in seconds names it. Over three seeds,
the weighted map of the right class puts its evidence in the frames (slices) that hold the digit — far ahead
of chance — and the per-frame profile peaks there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import classcontrast as cc
from classcontrast.viz.views import profile

T, SIDE, DIGIT, PRESENT = 8, 16, 12, 2  # frames (slices), frame side, digit side, frames holding the digit


def make_clips(n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clips (n, 1, T, 16, 16) in [0, 1], labels (n,), evidence (n, T) bool: the frames holding the digit)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    idx = order[:1300] if split == "train" else order[1300:]
    small = torch.from_numpy(d.images[idx] / 16.0).float()[:, None]
    digits = F.interpolate(small, size=(DIGIT, DIGIT), mode="bilinear", align_corners=False).clamp(0, 1)[:, 0]
    rng = np.random.default_rng(seed)
    clips = torch.from_numpy(rng.uniform(0, 0.25, size=(n, 1, T, SIDE, SIDE)).astype(np.float32))
    labels = torch.empty(n, dtype=torch.long)
    evidence = torch.zeros(n, T, dtype=torch.bool)
    for i in range(n):
        j = int(rng.integers(len(idx)))
        start = int(rng.integers(0, T - PRESENT + 1))
        y0, x0 = (int(v) for v in rng.integers(0, SIDE - DIGIT + 1, size=2))
        clips[i, 0, start : start + PRESENT, y0 : y0 + DIGIT, x0 : x0 + DIGIT] = torch.maximum(
            clips[i, 0, start : start + PRESENT, y0 : y0 + DIGIT, x0 : x0 + DIGIT], digits[j])
        labels[i], evidence[i, start : start + PRESENT] = int(d.target[idx][j]), True
    return clips, labels, evidence


class Clip3D(nn.Module):
    """Conv3d-BN-ReLU ×2 (the second halving space), a third conv, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                                      nn.Conv3d(8, 16, 3, padding=1, stride=(1, 2, 2)), nn.BatchNorm3d(16), nn.ReLU(),
                                      nn.Conv3d(16, 24, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax((2, 3, 4)))


def train(seed: int, n: int = 900, epochs: int = 3) -> nn.Module:
    clips, labels, _ = make_clips(n, seed)
    torch.manual_seed(seed)
    model = Clip3D()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, n, 50):
            opt.zero_grad()
            F.cross_entropy(model(clips[i : i + 50]), labels[i : i + 50]).backward()  # training
            opt.step()
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_weighted_map_finds_the_frames_that_hold_the_digit(seed: int) -> None:
    model = train(seed)
    clips, labels, evidence = make_clips(200, seed + 100, split="test")
    with torch.no_grad():
        accuracy = float((model(clips).argmax(1) == labels).float().mean())
    assert accuracy > 0.7, accuracy
    ex = cc.explain(model, clips, "gradient_x_input", "weighted", labels)
    frames = profile(ex)[:, 0].clamp_min(0)  # (n, T) each frame's positive evidence
    share = float((frames * evidence).sum() / frames.sum())
    assert share > 0.75, share  # chance: PRESENT / T = 0.25
    peaks = frames.argmax(1)
    assert float(evidence[torch.arange(len(clips)), peaks].float().mean()) > 0.85
    assert ex.maps.shape == (200, 1, T, SIDE, SIDE)
