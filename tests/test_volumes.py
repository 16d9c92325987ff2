"""3-D volumes: NIfTI in and out (nibabel), regions of voxels under MONAI's sliding-window inference (equal to
autograd through ``sliding_window_inference`` itself, and to the whole-volume map when one window covers the
volume), and clips read in order (PyAV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.reference import relerr

monai = pytest.importorskip("monai")
CONTRASTS = ["original", "mean", "max", "weighted", "probability", cc.Foil(0)]


def _unet(dims: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return monai.networks.nets.UNet(spatial_dims=dims, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,),
                                    num_res_units=1).double().eval()


def test_nifti_round_trip_keeps_array_and_affine(tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -4], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    volume, read = cc.load_volume(tmp_path / "scan.nii.gz")
    assert volume.shape == (1, 5, 6, 7) and np.array_equal(volume[0].numpy(), data) and np.array_equal(read, affine)
    cc.save_volume(tmp_path / "map.nii.gz", volume[0] * 2, read)
    back = nibabel.load(tmp_path / "map.nii.gz")
    assert np.allclose(back.get_fdata(), data * 2, atol=1e-6) and np.allclose(back.affine, affine)
    four = rng.normal(size=(4, 5, 6, 2)).astype(np.float32)  # channels last in the file: first in the tensor
    nibabel.save(nibabel.Nifti1Image(four, np.eye(4)), tmp_path / "two.nii")
    assert torch.equal(cc.load_volume(tmp_path / "two.nii")[0], torch.from_numpy(np.moveaxis(four, -1, 0)))
    with pytest.raises(cc.ClassContrastError, match=r"ends with \.nii"):
        cc.save_volume(tmp_path / "map.png", volume[0])
    (tmp_path / "bad.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(cc.ClassContrastError, match="could not be read as a NIfTI volume"):
        cc.load_volume(tmp_path / "bad.nii.gz")


def _backend(name: str) -> None:
    from classcontrast.data.video import _torchcodec

    pytest.importorskip("av")  # writes the clips
    if name == "torchcodec" and _torchcodec() is None:
        pytest.skip("torchcodec is not installed here, or finds no FFmpeg libraries (apt-get install ffmpeg)")


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
def test_a_clip_reads_every_frame_in_order_and_evenly_spaced_frames(tmp_path: Path, backend: str) -> None:
    _backend(backend)
    frames = np.zeros((12, 32, 48, 3), np.uint8)
    for t in range(12):
        frames[t] = t * 20  # each frame its own grey level
    cc.save_video(tmp_path / "clip.mp4", frames, fps=6)
    clip = cc.load_video(tmp_path / "clip.mp4", backend=backend)
    assert clip.shape == (3, 12, 32, 48)
    levels = clip.mean((0, 2, 3)) * 255
    assert torch.all(levels[1:] > levels[:-1]) and (levels - torch.arange(12) * 20).abs().max() < 4
    four = cc.load_video(tmp_path / "clip.mp4", frames=4, size=16, backend=backend)
    assert four.shape == (3, 4, 16, 24)
    assert (four.mean((0, 2, 3)) * 255 - torch.tensor([1.0, 4, 7, 10]) * 20).abs().max() < 4  # frames 1, 4, 7, 10
    with pytest.raises(cc.ClassContrastError, match="could not be read as a video"):
        (tmp_path / "bad.mp4").write_bytes(b"not a video")
        cc.load_video(tmp_path / "bad.mp4", backend=backend)


def test_torchcodec_and_pyav_read_the_same_frames(tmp_path: Path) -> None:
    """Where torchcodec loads (``backend=None`` then uses it), it reads what PyAV reads: both decode with FFmpeg."""
    _backend("torchcodec")
    frames = np.random.default_rng(0).integers(0, 256, (7, 32, 48, 3), dtype=np.uint8)
    cc.save_video(tmp_path / "noise.mp4", frames, fps=5)
    theirs = cc.load_video(tmp_path / "noise.mp4", backend="pyav")
    mine = cc.load_video(tmp_path / "noise.mp4", backend="torchcodec")
    assert torch.equal(cc.load_video(tmp_path / "noise.mp4"), mine)
    torch.testing.assert_close(cc.load_video(tmp_path / "noise.mp4", frames=3), theirs[:, [1, 3, 5]], rtol=0,
                               atol=2 / 255)
    with pytest.raises(cc.ClassContrastError, match="unknown video backend 'opencv'"):
        cc.load_video(tmp_path / "noise.mp4", backend="opencv")


@pytest.mark.parametrize(("mode", "methods"), [("constant", ("gradient", "gradient_x_input", "integrated_gradients")),
                                               ("gaussian", ("gradient",))])
def test_regions_under_sliding_windows_equal_autograd_through_monai(mode: str, methods: tuple[str, ...]) -> None:
    from monai.inferers import sliding_window_inference

    net = _unet()
    x = torch.randn(1, 1, 20, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    windowed = cc.SlidingWindow(net, roi_size=12, sw_batch_size=2, overlap=0.25, mode=mode)
    with torch.no_grad():
        y = sliding_window_inference(x, 12, 2, net, 0.25, mode)
    cls = int(y.argmax(1).flatten().bincount(minlength=3).argmax())
    mask = y.argmax(1)[0] == cls
    for method in methods:
        ex = cc.explain(windowed, x, method, CONTRASTS, cc.Region(cls), **({"steps": 2} if method[0] == "i" else {}))
        assert torch.equal(ex["weighted"].units[0][0]["mask"], mask)
        for key, c in zip(ex, CONTRASTS, strict=True):
            contrast = cc.get_contrast(c)

            def score(inp: torch.Tensor, contrast: object = contrast) -> torch.Tensor:
                out = sliding_window_inference(inp, 12, 2, net, 0.25, mode)  # MONAI's own, no checkpoint
                pixels = out[0].movedim(0, -1)[mask]
                return contrast.score(pixels, torch.full((len(pixels),), cls)).sum()  # type: ignore[attr-defined]

            if method == "integrated_gradients":
                from classcontrast.methods.integrated import quadrature

                alphas, weights = quadrature("gausslegendre", 2)
                g = torch.zeros_like(x)
                for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
                    point = (a * x).requires_grad_(True)
                    g += w * torch.autograd.grad(score(point), point)[0]
                ref = (g * x).sum(1)[0]
            else:
                leaf = x.clone().requires_grad_(True)
                g = torch.autograd.grad(score(leaf), leaf)[0]
                ref = (g if method == "gradient" else g * x).sum(1)[0]
            got = ex[key].maps[0, 0]
            if key == "foil:0" and cls == 0:
                assert got.abs().max() == 0
                continue
            assert relerr(got, ref) < 1e-9, (method, key, relerr(got, ref))


def test_one_window_over_the_whole_volume_is_the_whole_volume_map() -> None:
    net = _unet()
    x = torch.randn(2, 1, 12, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    whole = cc.explain(net, x, "gradient", ["weighted", cc.Foil(1)], cc.Region.all(1))
    one = cc.explain(cc.SlidingWindow(net, roi_size=12), x, "gradient", ["weighted", cc.Foil(1)], cc.Region.all(1))
    for key in whole:
        torch.testing.assert_close(one[key].maps, whole[key].maps, rtol=1e-12, atol=1e-14)


def test_layer_methods_under_a_sliding_window_say_what_to_use() -> None:
    windowed = cc.SlidingWindow(_unet().float(), roi_size=8)
    for method in ("gradcam", "fullgrad", "lrp"):
        with pytest.raises(cc.ClassContrastError, match=r"once per window.*gradient, gradient_x_input"):
            cc.explain(windowed, torch.randn(1, 1, 12, 12, 12), method, "weighted", cc.Region.all(1))


def test_the_command_line_explains_a_clip_and_writes_its_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from tests.test_cli import run

    frames = (np.random.default_rng(0).uniform(0, 1, size=(8, 48, 64, 3)) * 255).astype(np.uint8)
    cc.save_video(tmp_path / "clip.mp4", frames, fps=8)
    npz, video = tmp_path / "maps.npz", tmp_path / "why.mp4"
    assert run(["explain", str(tmp_path / "clip.mp4"), "--model", "torchvision:r3d_18", "--weights", "none",
                "--frames", "8", "--top-k", "1", "--contrast", "original", "weighted", "--out",
                str(tmp_path / "why.png"), "--save-maps", str(npz), "--video", str(video)]) == 0
    saved = np.load(npz)
    assert saved["maps/gradcam/weighted"].shape == (1, 1, 8, 112, 112)  # --frames 8: every frame of the clip
    assert (tmp_path / "why.png").stat().st_size > 10_000
    back = cc.load_video(video)
    assert back.shape[1] == 8 and back.shape[-1] == 3 * 112  # the clip beside its two maps, frame by frame
    assert run(["explain", str(tmp_path / "clip.mp4"), "--model", "torchvision:r3d_18", "--weights", "none",
                "--frames", "8", "--top-k", "1", "--contrast", "weighted", "--out", str(tmp_path / "a.png"), "--html",
                str(tmp_path / "a.html")]) == 0
    from tests.test_review_cli import page_data

    entries = page_data(tmp_path / "a.html")["entries"]
    assert [e["view"]["index"] for e in entries] == list(range(8)) and entries[0]["view"]["label"] == "frame 1 of 8"


def test_the_command_line_explains_a_volume_and_writes_nifti_maps(tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")
    from tests.test_cli import run

    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    scan = np.random.default_rng(1).normal(size=(32, 32, 32)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(scan, affine), tmp_path / "scan.nii.gz")
    assert run(["explain", str(tmp_path / "scan.nii.gz"), "--model", "monai:unet", "--weights", "none", "--method",
                "gradient", "--contrast", "weighted", "--top-k", "1", "--out", str(tmp_path / "why.png"),
                "--save-maps", str(tmp_path / "map.nii.gz")]) == 0
    written = nibabel.load(tmp_path / "map.nii.gz")
    assert written.shape == scan.shape and np.allclose(written.affine, affine)
    torch.manual_seed(0)  # the same random network the command built: the map equals the library's
    bundle = cc.load_model("monai:unet", weights="none")
    x = bundle.transform(cc.load_volume(tmp_path / "scan.nii.gz")[0])[None]
    ex = cc.explain(bundle, x, "gradient", "weighted", cc.Region.all(1))
    assert np.allclose(written.get_fdata(), ex.maps[0, 0].numpy(), atol=1e-5 * float(ex.maps.abs().max()))


def test_the_explorer_slides_through_a_volumes_slices_in_a_real_browser(tmp_path: Path) -> None:
    """A volume classifier's page: one entry per slice, a slider between them keeping the target and contrast."""
    from tools.browser import Browser

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    page = cc.write_explorer(tmp_path / "volume.html", net, torch.rand(1, 1, 6, 24, 24), ["gradient"])
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        assert "slice 1 of 6" in b.eval("document.querySelector('.cc-panel').textContent")
        b.click('button[data-control="contrast"][data-value="max"]')
        b.settled()
        b.eval("const r = document.querySelector('input[data-control=\"view\"]'); r.value = 3; "
               "r.dispatchEvent(new Event('input'))")
        b.settled()
        panel = b.eval("document.querySelector('.cc-panel').textContent")
        assert "slice 4 of 6" in panel
        pressed = b.eval("document.querySelector('button[data-control=\"contrast\"][aria-pressed=\"true\"]')"
                         ".dataset.value")
        assert pressed == "max"  # the contrast is kept while sliding


def test_the_explorer_shows_a_3d_segmenters_regions_slice_by_slice(tmp_path: Path) -> None:
    """A 3-D segmenter's regions on the page: per region one entry per slice (its outline on that slice, its maps
    there equal to the region's map from explain), a slider between them; the same in a real browser."""
    from classcontrast.explorer.compute import explorer_data
    from classcontrast.explorer.encode import fit
    from tests.test_detection import _tile

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 1)).eval()
    x = torch.rand(1, 1, 6, 24, 24)
    data = explorer_data(net, x, ["gradient"], cc.Region.all(2))
    groups: dict[str, list[dict]] = {}
    for e in data["entries"]:
        groups.setdefault(e["view"]["group"], []).append(e)
    assert len(groups) == 2 and all(len(g) == 6 for g in groups.values())
    probe = cc.explain(net, x, "gradient", "original", cc.Region.all(2))
    for k, (group, unit) in enumerate(zip(groups.values(), probe.units[0], strict=True)):
        want = cc.explain(net, x, "gradient", "weighted", cc.Region(unit["target"], unit["mask"])).maps[0, 0]
        for d, e in enumerate(group):
            rows = e["unit"]["mask"]["rows"]
            assert rows == ["".join("1" if v else "0" for v in r) for r in unit["mask"][d].tolist()]
            assert e["view"]["label"] == f"slice {d + 1} of 6" and e["image"] == f"i0_{d}"
            stored = _tile(e, "gradient", 0, "weighted")  # the page's quantised map of the region's own class
            scale = float(want[d].abs().max())
            np.testing.assert_allclose(stored, want[d].numpy(), atol=scale / 100)  # 8-bit codes: within 1 %
        assert k < 2
    page = cc.write_explorer(tmp_path / "regions.html", net, x, ["gradient"], cc.Region.all(2))
    from tools.browser import Browser

    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        assert "slice 1 of 6" in b.eval("document.querySelector('.cc-panel').textContent")
        b.eval("const r = document.querySelector('input[data-control=\"view\"]'); r.value = 4; "
               "r.dispatchEvent(new Event('input'))")
        b.settled()
        assert "slice 5 of 6" in b.eval("document.querySelector('.cc-panel').textContent")
    assert fit(want).shape == want.shape  # 24 x 24 is stored as it is


@pytest.mark.parametrize(("name", "multiple"), [("unet", 16), ("segresnet", 8)])
def test_a_volume_of_a_size_the_segmenter_cannot_take_says_how_to_pad(name: str, multiple: int) -> None:
    """MONAI's segmenters join levels of equal size: a volume whose sizes are not multiples of their downsampling
    failed deep inside the network; it is one line naming the sizes to pad to, and the padded volume runs."""
    bundle = cc.load_model(f"monai:{name}", weights="none")
    size = (multiple * 3, multiple * 3 + 3, multiple * 2 + 1)
    with pytest.raises(cc.ClassContrastError, match=rf"multiple of {multiple}.*{size[0]}×{size[1]}×{size[2]}: pad it "
                       rf"to {multiple * 3}×{multiple * 4}×{multiple * 3} .*DivisiblePad\(k={multiple}"):
        bundle.transform(torch.randn(1, *size))
    padded = bundle.transform(torch.randn(1, multiple * 3, multiple * 4, multiple * 3))[None]
    with torch.no_grad():
        assert bundle.model(padded).shape == (1, 2, *padded.shape[2:])
