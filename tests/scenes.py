"""Scenes of real handwritten digits (scikit-learn's ``load_digits``) pasted on a 64×64 canvas: 2–4 distinct
digits per scene, each in its own cell of a 4×4 grid with a random offset, so every scene's labels, boxes
and per-pixel classes are known. Honest data for multi-label, segmentation and detection checks offline."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classcontrast.models import ModelBundle, Normalize

SIZE, CELL, DIGIT = 64, 16, 12


@dataclass
class Scenes:
    images: torch.Tensor  # (N, 1, 64, 64) in [0, 1]
    labels: torch.Tensor  # (N, 10) multi-hot: which digits appear
    boxes: list[dict[int, tuple[int, int, int, int]]]  # per scene: digit -> (x0, y0, x1, y1), exclusive ends
    segmentation: torch.Tensor  # (N, 64, 64) long: 0 background, d + 1 for digit d's ink

    def box_mask(self, i: int, digit: int) -> torch.Tensor:
        """(64, 64) bool: the box of ``digit`` in scene ``i``."""
        x0, y0, x1, y1 = self.boxes[i][digit]
        m = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        m[y0:y1, x0:x1] = True
        return m


def _digits(split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 12×12 digits of one split (first 1,300 of a fixed permutation: train; the rest: test)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    idx = order[:1300] if split == "train" else order[1300:]
    small = torch.from_numpy(d.images[idx] / 16.0).float()[:, None]
    big = F.interpolate(small, size=(DIGIT, DIGIT), mode="bilinear", align_corners=False).clamp(0, 1)[:, 0]
    return big.numpy(), d.target[idx]


def make_scenes(n: int, seed: int = 0, split: str = "train") -> Scenes:
    """``n`` scenes drawn with ``seed`` from the digits of ``split`` (train and test share no digit image)."""
    images, targets = _digits(split, seed)
    by_class = [np.flatnonzero(targets == c) for c in range(10)]
    rng = np.random.default_rng(seed)
    canvas = np.zeros((n, SIZE, SIZE), np.float32)
    seg = np.zeros((n, SIZE, SIZE), np.int64)
    labels = np.zeros((n, 10), np.float32)
    boxes: list[dict[int, tuple[int, int, int, int]]] = []
    grid = SIZE // CELL
    for i in range(n):
        k = int(rng.integers(2, 5))
        classes = rng.choice(10, k, replace=False)
        cells = rng.choice(grid * grid, k, replace=False)
        scene: dict[int, tuple[int, int, int, int]] = {}
        for c, cell in zip(classes, cells, strict=True):
            img = images[rng.choice(by_class[c])]
            y0 = (cell // grid) * CELL + int(rng.integers(0, CELL - DIGIT + 1))
            x0 = (cell % grid) * CELL + int(rng.integers(0, CELL - DIGIT + 1))
            canvas[i, y0 : y0 + DIGIT, x0 : x0 + DIGIT] = img
            seg[i, y0 : y0 + DIGIT, x0 : x0 + DIGIT][img > 0.25] = c + 1
            labels[i, c] = 1
            scene[int(c)] = (x0, y0, x0 + DIGIT, y0 + DIGIT)
        boxes.append(scene)
    return Scenes(torch.from_numpy(canvas)[:, None], torch.from_numpy(labels), boxes, torch.from_numpy(seg))


class SceneNet(nn.Module):
    """Fully convolutional: Conv-BN-ReLU blocks to a 16×16 map, a 1×1 conv to 10 per-position class
    logits, pooled by log-mean-exp (a smooth max: the image's logit for a digit is high where the digit
    is) into the image's logits for a multi-label sigmoid head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.classifier = nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.classifier(self.features(x)).flatten(2)
        return z.logsumexp(-1) - math.log(z.shape[-1])


def _trained(make: Callable[[], nn.Module], seed: int, n: int, epochs: int, lr: float,
             loss: Callable[[Any, Scenes, Any, slice], torch.Tensor],
             prepare: Callable[[Scenes], Any] = lambda data: None) -> tuple[nn.Module, Normalize]:
    """A model made by ``make`` (after seeding) trained with Adam on ``n`` training scenes of ``seed``,
    batches of 64: ``loss(output, scenes, prepare(scenes), batch)``; in eval mode, with its normalisation."""
    data = make_scenes(n, seed=seed, split="train")
    extra = prepare(data)
    torch.manual_seed(seed)
    model = make()
    norm = Normalize((0.5,), (0.5,))
    x = norm(data.images)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for i in range(0, n, 64):
            opt.zero_grad()
            loss(model(x[i : i + 64]), data, extra, slice(i, i + 64)).backward()  # training, not an explanation
            opt.step()
    return model.eval(), norm


def _bundle(model: nn.Module, norm: Normalize, categories: list[str], name: str, head: str = "softmax") -> ModelBundle:
    from torchvision import transforms as T

    return ModelBundle(model, T.Compose([T.Grayscale(), T.ToTensor()]), norm, categories, name, head=head)


def train_multilabel(seed: int = 0, n: int = 2000, epochs: int = 6) -> ModelBundle:
    """A multi-label digit-scene CNN (sigmoid head), trained with binary cross-entropy in a few seconds."""
    model, norm = _trained(SceneNet, seed, n, epochs, 3e-3,
                           lambda out, data, _, b: F.binary_cross_entropy_with_logits(out, data.labels[b]))
    return _bundle(model, norm, [str(i) for i in range(10)], "digit-scenes-multilabel", head="sigmoid")


class SceneSegNet(nn.Module):
    """A small FCN: SceneNet's features, a 1×1 conv to 11 per-position logits (background, digits 0–9) at
    16×16, upsampled bilinearly to the input's size (torchvision's ``{"out": ...}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = SceneNet().features
        self.classifier = nn.Conv2d(32, 11, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.classifier(self.backbone(x))
        return {"out": F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def train_segmenter(seed: int = 0, n: int = 1500, epochs: int = 5) -> ModelBundle:
    """A digit-scene segmenter (per-pixel softmax over background and the ten digits) trained with
    cross-entropy in a few seconds; its categories are ``background``, ``0`` … ``9``."""
    weight = torch.tensor([0.1] + [1.0] * 10)  # ink is ~4% of the pixels: the background weighs less
    model, norm = _trained(SceneSegNet, seed, n, epochs, 3e-3,
                           lambda out, data, _, b: F.cross_entropy(out["out"], data.segmentation[b], weight=weight))
    return _bundle(model, norm, ["background", *(str(i) for i in range(10))], "digit-scenes-segmenter")


class SceneDetector(nn.Module):
    """A one-stage detector in the DETR output convention (YOLO-v1 style): SceneNet's features pooled to
    the 4×4 grid of cells, each cell a query with 11 class logits (the ten digits, then "no object") and a
    box (centre x, centre y, width, height as fractions of the image)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = SceneNet().features
        self.cells = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(4))
        self.classes = nn.Conv2d(64, 11, 1)
        self.boxes = nn.Conv2d(64, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.cells(self.backbone(x))
        return {"logits": self.classes(f).flatten(2).transpose(1, 2),
                "pred_boxes": torch.sigmoid(self.boxes(f)).flatten(2).transpose(1, 2)}


def cell_targets(scenes: Scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scene and cell (row-major 4×4): the digit in it (10: none) and its box (cx, cy, w, h in [0, 1])."""
    n = len(scenes.boxes)
    labels = torch.full((n, 16), 10, dtype=torch.long)
    boxes = torch.zeros(n, 16, 4)
    for i, scene in enumerate(scenes.boxes):
        for digit, (x0, y0, x1, y1) in scene.items():
            cell = (y0 // CELL) * (SIZE // CELL) + x0 // CELL
            labels[i, cell] = digit
            boxes[i, cell] = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]) / SIZE
    return labels, boxes


def train_detector(seed: int = 0, n: int = 1500, epochs: int = 6) -> ModelBundle:
    """The digit-scene detector trained in a few seconds (cross-entropy on each cell's class, L1 on the
    boxes of the cells that hold a digit); categories ``0`` … ``9``, ``no object``."""
    weight = torch.tensor([1.0] * 10 + [0.5])  # most cells hold no digit

    def loss(out: dict[str, torch.Tensor], data: Scenes, targets: Any, b: slice) -> torch.Tensor:
        labels, boxes = targets[0][b], targets[1][b]
        has = labels < 10
        return F.cross_entropy(out["logits"].reshape(-1, 11), labels.reshape(-1), weight=weight) \
            + 5 * F.l1_loss(out["pred_boxes"][has], boxes[has])

    model, norm = _trained(SceneDetector, seed, n, epochs, 5e-3, loss, cell_targets)
    return _bundle(model, norm, [*(str(i) for i in range(10)), "no object"], "digit-scenes-detector")


class _YoloHead(nn.Module):
    """An anchor-free head in Ultralytics YOLO's conventions (one level, stride 4): every position of the 16×16
    map an anchor with ten sigmoid class logits (``cv3``) and the distances from its centre to its box's sides
    (``cv2``); in eval mode the output of Ultralytics' ``Detect``: (decoded (B, 4 + 10, anchors) — box centre x,
    centre y, width, height in pixels, then σ of the class logits —, {"scores", "boxes", "feats"})."""

    nc, reg_max = 10, 1

    def __init__(self) -> None:
        super().__init__()
        self.stride = torch.tensor([4.0])
        self.cv3 = nn.Conv2d(64, 10, 1)
        self.cv2 = nn.Conv2d(64, 4, 1)

    def forward(self, f: torch.Tensor) -> Any:
        scores = self.cv3(f).flatten(2)  # (B, 10, 256)
        dist = F.softplus(self.cv2(f)).flatten(2) * 4  # (B, 4, 256): left, top, right, bottom in pixels
        raw = {"scores": scores, "boxes": dist, "feats": [f]}
        if self.training:
            return raw
        h, w = f.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=f.dtype), torch.arange(w, dtype=f.dtype), indexing="ij")
        cx, cy = (xs.flatten() + 0.5) * 4, (ys.flatten() + 0.5) * 4
        x0, y0, x1, y1 = cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]
        boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1)
        return torch.cat([boxes, scores.sigmoid()], 1), raw


class SceneYolo(nn.Module):
    """The digit-scene detector recast as an Ultralytics-style YOLO model (``model``: a sequence of layers ending
    in the head), so that classcontrast explains it as one: SceneNet's features, `_YoloHead`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Sequential(*SceneNet().features, nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()),
                                   _YoloHead())

    def forward(self, x: torch.Tensor) -> Any:
        return self.model[1](self.model[0](x))


def anchor_targets(scenes: Scenes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scene and anchor (the 16×16 positions, row-major): the multi-hot classes of the digit whose box holds the
    anchor's centre, and the distances from the centre to that box's sides."""
    n, side = len(scenes.boxes), SIZE // 4
    labels, dist = torch.zeros(n, 10, side * side), torch.zeros(n, 4, side * side)
    centre = (torch.arange(side, dtype=torch.float32) + 0.5) * 4
    cy, cx = (v.flatten() for v in torch.meshgrid(centre, centre, indexing="ij"))
    for i, scene in enumerate(scenes.boxes):
        for digit, (x0, y0, x1, y1) in scene.items():
            inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
            labels[i, digit, inside] = 1
            dist[i, :, inside] = torch.stack([cx - x0, cy - y0, x1 - cx, y1 - cy])[:, inside]
    return labels, dist


def train_yolo(seed: int = 0, n: int = 1000, epochs: int = 5) -> ModelBundle:
    r"""`SceneYolo` trained in a few seconds: each anchor's ten class logits against a "no digit" logit fixed at 0
    (cross-entropy; a digit's box holds the anchors that see it), so that $\sigma(y_d) = p_d / (p_d + p_{none})$ is
    each digit's own yes/no decision, as YOLO's sigmoid scores are; L1 on the box distances of the anchors that see a
    digit. Categories ``0`` … ``9``, sigmoid head. (Per-class binary cross-entropy learned where digits are but not
    which, in the seconds this has.)"""

    weight = torch.tensor([1.0] * 10 + [0.1])  # most anchors hold no digit

    def loss(out: dict[str, torch.Tensor], data: Scenes, targets: Any, b: slice) -> torch.Tensor:
        labels, dist = targets[0][b], targets[1][b]
        digit = labels.amax(1) > 0
        classes = torch.where(digit, labels.argmax(1), 10)  # (B, anchors): the digit, or 10 for none
        logits = torch.cat([out["scores"], torch.zeros_like(out["scores"][:, :1])], 1)  # "no digit" fixed at 0
        positive = digit[:, None].expand_as(dist)
        return F.cross_entropy(logits, classes, weight=weight) + 0.1 * F.l1_loss(out["boxes"][positive], dist[positive])

    model, norm = _trained(SceneYolo, seed, n, epochs, 5e-3, loss, anchor_targets)
    return _bundle(model, norm, [str(i) for i in range(10)], "digit-scenes-yolo", head="sigmoid")


FRACTIONS = [0.0, 0.01, 0.02, 0.04, 0.08, 0.16]


def deletion_area(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, maps: torch.Tensor) -> float:
    """The mean area under ``score`` (one number per scene) as each map's top-ranked pixels become
    background (−1 in the normalised input), over the deleted fraction FRACTIONS normalised to [0, 1]: a
    slow, separate re-implementation of deletion, no classcontrast code in it."""
    n, _, h, w = x.shape
    order = maps.flatten(1).argsort(1, descending=True)
    curve = []
    for f in FRACTIONS:
        keep = torch.ones(n, h * w)
        keep.scatter_(1, order[:, : round(f * h * w)], 0.0)
        keep = keep.view(n, 1, h, w)
        with torch.no_grad():
            curve.append(score(x * keep - (1 - keep)))
    c, fr = torch.stack(curve, 1), torch.tensor(FRACTIONS)
    return float((((c[:, 1:] + c[:, :-1]) / 2) * (fr[1:] - fr[:-1])).sum(1).mean() / FRACTIONS[-1])


def box_share(maps: torch.Tensor, scenes: Scenes, digits: list[int]) -> float:
    """The mean share of each map's positive mass inside the box of its digit."""
    shares = []
    for i, d in enumerate(digits):
        m = maps[i].clamp(min=0)
        shares.append(float(m[scenes.box_mask(i, d)].sum() / m.sum().clamp(min=1e-12)))
    return sum(shares) / len(shares)


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def vlm_question(digit: int) -> str:
    """The trained vision-language model's question about ``digit``, as written (image first, no template)."""
    return f"<image> is there a {NAMES[digit]}"


def train_vlm(seed: int = 0, n: int = 1500, steps: int = 400, align: int = 500) -> tuple[nn.Module, Any]:
    """(a tiny LLaVA answering "is there a <digit>" with yes or no on digit scenes, its LlavaProcessor), trained in
    seconds the way LLaVA is: (1) alignment — the CLIP tower (16 × 16 patches: one per cell) and the projector
    learn to map each cell to the embedding of its digit's word ("no" for an empty cell); (2) the language model
    learns the answers with the tower and projector frozen, half the questions about a digit in the scene."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from tests.vlm import tokenizer

    tok = tokenizer(words=["is", "there", "a", "yes", "no", *NAMES])
    vocab = tok.get_vocab()
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              image_size=SIZE, patch_size=CELL, num_channels=1)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=4,
                                                      vision_feature_layer=-1, projector_hidden_act="gelu"))
    data = make_scenes(n, seed=seed, split="train")
    x = (data.images - 0.5) / 0.5
    rng = np.random.default_rng(seed)
    cells = torch.zeros(n, (SIZE // CELL) ** 2, dtype=torch.long)  # 0: empty, d + 1: digit d
    for i, scene in enumerate(data.boxes):
        for d, (x0, y0, _, _) in scene.items():
            cells[i, (y0 // CELL) * (SIZE // CELL) + x0 // CELL] = d + 1
    tower, projector, embed = model.model.vision_tower, model.model.multi_modal_projector, model.get_input_embeddings()
    words = torch.tensor([vocab["no"]] + [vocab[w] for w in NAMES])
    opt = torch.optim.Adam([*tower.parameters(), *projector.parameters(), embed.weight], lr=1e-3)
    for _ in range(align):  # (1) alignment: each cell's feature nearest its word's embedding (cosine, 11 words)
        b = torch.from_numpy(rng.choice(n, 64, replace=False))
        h = F.normalize(projector(tower(pixel_values=x[b], output_hidden_states=True).hidden_states[-1][:, 1:]), dim=-1)
        logits = h @ F.normalize(embed.weight[words], dim=-1).T * 10
        loss = F.cross_entropy(logits.reshape(-1, len(words)), cells[b].reshape(-1))
        opt.zero_grad()
        loss.backward()  # training, not an explanation
        opt.step()
    asked = np.array([rng.choice(np.flatnonzero(data.labels[i].numpy())) if i % 2 == 0 else
                      rng.choice(np.flatnonzero(data.labels[i].numpy() == 0)) for i in range(n)])
    answers = torch.tensor([vocab["yes"] if i % 2 == 0 else vocab["no"] for i in range(n)])
    ids = torch.tensor([[4] * 16 + [vocab[w] for w in ("is", "there", "a", NAMES[d])] for d in asked])
    with torch.no_grad():  # (2) the language model on the frozen aligned features
        features = projector(tower(pixel_values=x, output_hidden_states=True).hidden_states[-1][:, 1:])
        prompts = embed(ids)
        prompts[:, :16] = features
    lm, head = model.model.language_model, model.lm_head
    opt = torch.optim.Adam([*lm.parameters(), *head.parameters()], lr=1e-3)
    for _ in range(steps):
        b = torch.from_numpy(rng.choice(n, 64, replace=False))
        loss = F.cross_entropy(head(lm(inputs_embeds=prompts[b]).last_hidden_state[:, -1]), answers[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    images = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE},
                                image_mean=[0.5], image_std=[0.5], do_convert_rgb=False)
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=CELL,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return model.eval(), processor
