"""Review round three, what a run writes: no output overwrites an input or another output, one function names every
file, notes instead of misleading panels, figures that fit (issue 38: items 6, 10, 11, 12, 17's figure texts, 21)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.test_cli import run


class _Flat(nn.Module):
    """Logits that barely depend on the input (a weight of 1e-14 under biases of order 5): every gradient map is
    numerically zero against its score, as a random YOLO's are (maps of 1e-13)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4)
        with torch.no_grad():
            self.head.weight.mul_(1e-14)
            self.head.bias.copy_(torch.tensor([5.0, -3.0, 1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))


def test_a_negligible_map_is_drawn_as_zero_with_a_note() -> None:
    """Per-map scaling would saturate a map of 1e-14 into full red and blue (today's main did); it is drawn as zero
    (a transparent overlay) with "≈ 0" under it, and `negligible` says so; a real map is not negligible."""
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    model = _Flat().double().eval()
    ex = cc.explain(model, x, "gradient", ["original", "weighted"], cc.TopK(2))
    assert bool(ex["weighted"].negligible().all()) and 0 < float(ex["weighted"].maps.abs().max()) < 1e-12
    real = cc.explain(nn.Sequential(nn.Flatten(), nn.Linear(297, 4)).double(), x, "gradient", "weighted")
    assert not bool(real.negligible().any())
    fig = cc.plot_explanations(x, dict(ex), ["a", "b", "c", "d"])
    maps = [ax for ax in fig.axes if ax.images and len(ax.images) == 2]  # grey photo + overlay
    assert len(maps) == 4
    for ax in maps:
        assert float(np.asarray(ax.images[1].get_array())[..., 3].max()) == 0.0  # nothing drawn over the photo
        assert any("≈ 0: negligible against its objective" in t.get_text() for t in ax.texts)


def test_a_foil_equal_to_the_target_is_a_note_not_a_panel(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Today's main drew an empty panel with no word; now a note in its place, and one line on the console."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(1, 3, 8, 8)
    top = int(model(x).argmax())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)
        ex = cc.explain(model, x, "gradient", ["original", cc.Foil(top)], top)
    fig = cc.plot_explanations(x, dict(ex), ["a", "b", "c"])
    panel = fig.axes[2]
    assert not panel.images and "the target\nitself — nothing to explain" in panel.texts[0].get_text()
    photo = tmp_path / "p.png"
    cc.sample_image("rocket").resize((90, 70)).save(photo)
    capsys.readouterr()
    assert run(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", "none", "--top-k", "1",
                "--method", "gradient", "--contrast", "original", "--foil", "0", "--target", "0", "--out",
                str(tmp_path / "w.png")]) == 0
    assert "rather than tench: the foil is the target itself, nothing to explain" in capsys.readouterr().out


def test_several_methods_and_contrasts_are_a_grid(tmp_path: Path) -> None:
    """3 methods × 2 contrasts: one row per method, one column per contrast (today's main drew one row of six maps:
    a figure as wide as seven cells)."""
    from PIL import Image

    photo = tmp_path / "harbour.png"
    cc.sample_image("coffee").resize((64, 48)).save(photo)
    assert run(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", "none", "--top-k", "1",
                "--method", "gradient", "gradcam", "gradient_x_input", "--contrast", "original", "weighted",
                "--out", str(tmp_path / "w.png")]) == 0
    width, height = Image.open(tmp_path / "w.png").size
    assert width < 3.2 * 2.4 * 150 and height > 3 * 2.4 * 150  # three cells wide, three rows high
    fig = cc.viz.grid.plot_grid([torch.rand(3, 8, 8)], {m: {c: cc.explain(
        nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), torch.rand(1, 3, 8, 8), m, c) for c in ("original", "max")}
        for m in ("gradient", "gradient_x_input")})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:3] == ["original", "max"] and "gradient_x_input" in titles[3]


def test_titles_fit_their_maps_and_dollars_stay_text(tmp_path: Path) -> None:
    """A long file name over a clip's frame strip is wrapped inside the figure (clipped at its left edge on today's
    main), and a name or prompt with dollars is drawn as written (today: a mathtext crash, or "5or6")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from classcontrast.viz.grid import drawn, fitted

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    x = torch.rand(1, 3, 8, 8)
    name = "a_very_long_recording_name_from_the_field_camera_2026_12_06.mp4: frame 3 of 16 $5 or $6"
    fig = cc.plot_explanations(x, {"weighted": cc.explain(model, x, "gradient", "weighted")}, titles=[name])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert "$5 or $6" in fig.axes[0].get_title() and drawn("$5 or $6") == "$5 or $6"
    assert all(t.get_parse_math() is False for ax in fig.axes for t in (ax.title, *ax.texts) if t.get_text())
    assert all(len(line) <= 26 for line in fitted(name).splitlines())
    photo = tmp_path / "price_$5_$6.png"
    cc.sample_image("coffee").resize((40, 30)).save(photo)
    assert run(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", "none", "--top-k", "1",
                "--out", str(tmp_path / "w.png")]) == 0


def _scan(path: Path, seed: int, shape: tuple[int, int, int] = (32, 32, 32)) -> None:
    nibabel = pytest.importorskip("nibabel")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)


def test_nifti_maps_never_collide_or_land_among_the_scans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two inputs named scan.nii.gz in two folders, and scan.v1/scan.v2, each get their own maps, equal to the
    library's (today's main wrote maps_scan.nii.gz for the first two — the second overwrote the first — and
    maps_scan.nii.gz again for scan.v1 and scan.v2, cut at the first dot); maps written into an input folder are
    refused before any work (the next run would read them as scans and overwrite them while reading)."""
    nibabel = pytest.importorskip("nibabel")
    scans = [tmp_path / "a" / "scan.nii.gz", tmp_path / "b" / "scan.nii.gz", tmp_path / "c" / "scan.v1.nii.gz",
             tmp_path / "c" / "scan.v2.nii.gz"]
    for seed, path in enumerate(scans):
        _scan(path, seed)
    out = tmp_path / "out" / "maps.nii.gz"
    assert run(["explain", *map(str, scans), "--model", "monai:unet", "--weights", "none", "--method", "gradient",
                "--contrast", "original", "weighted", "--top-k", "1", "--out", str(tmp_path / "out" / "w.png"),
                "--save-maps", str(out)]) == 0
    written = sorted(p.name for p in out.parent.glob("maps*.nii.gz"))
    assert written == [f"maps_gradient_{c}_{i:03d}_{s}.nii.gz" for c in ("original", "weighted")
                       for i, s in enumerate(["scan", "scan", "scan.v1", "scan.v2"])]
    torch.manual_seed(0)  # the command's random network
    bundle = cc.load_model("monai:unet", weights="none")
    for i, (path, stem) in enumerate(zip(scans, ["scan", "scan", "scan.v1", "scan.v2"], strict=True)):
        x = bundle.transform(cc.load_volume(path)[0])[None]
        ex = cc.explain(bundle, x, "gradient", "weighted", cc.Region.all(1))
        got = nibabel.load(out.parent / f"maps_gradient_weighted_{i:03d}_{stem}.nii.gz").get_fdata()
        want = ex.maps[0, 0].numpy()  # (float32: the command ran the four volumes as one batch)
        assert np.abs(got - want).max() < 1e-3 * np.abs(want).max(), i
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert run(["explain", str(tmp_path / "c"), "--model", "monai:unet", "--weights", "none", "--method",
                "gradient", "--top-k", "1", "--out", str(tmp_path / "w2.png"), "--save-maps",
                str(tmp_path / "c" / "maps.nii.gz")]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == before


def test_every_clip_gets_its_own_overlay_video(tmp_path: Path) -> None:
    """--video with two clips writes one overlay per clip (today's main wrote only the first, without a word)."""
    pytest.importorskip("av")
    for i, name in enumerate(("left.mp4", "right.mp4")):
        frames = (np.random.default_rng(i).uniform(0, 1, size=(6, 40, 56, 3)) * 255).astype(np.uint8)
        cc.save_video(tmp_path / name, frames, fps=6)
    assert run(["explain", str(tmp_path / "left.mp4"), str(tmp_path / "right.mp4"), "--model", "torchvision:r3d_18",
                "--weights", "none", "--frames", "6", "--top-k", "1", "--contrast", "weighted", "--out",
                str(tmp_path / "why.png"), "--video", str(tmp_path / "why.mp4")]) == 0
    videos = sorted(p.name for p in tmp_path.glob("why*.mp4"))
    assert videos == ["why_000_left.mp4", "why_001_right.mp4"]
    first, second = (cc.load_video(tmp_path / v) for v in videos)
    assert first.shape[1] == second.shape[1] == 6 and not torch.equal(first, second)


def test_the_explorer_draws_maps_over_a_grey_photo(tmp_path: Path) -> None:
    """Where a map is 0 the page shows the photo in grey, as the figures do (today's main laid the maps over the
    colour photo: red evidence on a red object read as nothing). The model reads the left half only, so the right
    half's gradient is exactly 0; the photo is pure red."""
    from tools.browser import Browser

    class Left(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(3 * 16 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x[..., :8].flatten(1))

    torch.manual_seed(0)
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0] = 1.0
    page = cc.write_explorer(tmp_path / "red.html", Left(), x, ["gradient"])
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        right = b.eval("""(() => { const c = document.querySelector('canvas.cc-main');
            const d = c.getContext('2d').getImageData(Math.floor(c.width * 0.8), Math.floor(c.height / 2), 1, 1).data;
            return [d[0], d[1], d[2]]; })()""")
    assert max(right) - min(right) <= 2 and abs(right[0] - (63.75 + 0.6 * 0.299 * 255)) <= 3, right


def test_the_answers_figure_has_the_signed_colour_bar_and_literal_dollars() -> None:
    """The vision-language figure had no colour bar (today's main), and its question's dollars were mathtext."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from classcontrast.viz.words import plot_answers

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    x = torch.rand(1, 3, 8, 8)
    ex = cc.explain(model, x, "gradient", "weighted")
    fig = plot_answers(x[0], {"gradient · weighted": ex}, {"gradient · weighted": torch.rand(1, 3)},
                       ["is", "it", "$5"], ["yes", "no"], "$5 or $6 ?")
    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert any("for t" in label for label in labels) and any("against t" in label for label in labels)
    assert "$5 or $6" in fig._suptitle.get_text() and fig._suptitle.get_parse_math() is False


def test_a_scans_values_are_windowed_for_display() -> None:
    """A CT volume's values (0 … 1000) were clamped to [0, 1] for the figures and the page: every slice drawn white.
    Pixels already in [0, 1] are shown as they are."""
    from classcontrast.explorer.encode import display_pixels
    from classcontrast.viz.overlay import viewable

    ct = torch.linspace(0, 1000, 4 * 6 * 6).reshape(1, 4, 6, 6)
    shown = viewable(ct)
    assert float(shown.min()) == 0.0 and float(shown.max()) == 1.0 and 0.3 < float(shown.mean()) < 0.7
    photo = torch.rand(3, 5, 5)
    assert torch.equal(viewable(photo), photo)
    page = display_pixels(ct[None], lambda v: v)
    assert 0.3 < float(page.mean()) < 0.7
