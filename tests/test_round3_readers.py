"""Review round three, the readers: clips and volumes read as asked and within the budgets of
`classcontrast.data.budgets`, checked from the header before decoding; one line for a bad input, never a traceback
(issue 38: items 7, 13, 14, 17's readers, 19)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import classcontrast as cc
from tests.test_cli import run

av = pytest.importorskip("av")


def _clip(path: Path, frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A clip whose frame i has a white square in row band i (frames are told apart), written with PyAV."""
    rng = np.random.default_rng(seed)
    data = (rng.uniform(0, 0.3, size=(frames, height, width, 3)) * 255).astype(np.uint8)
    for i in range(frames):
        data[i, :8, :8] = 255
        data[i, (i * 4) % (height - 4) : (i * 4) % (height - 4) + 4, 8:] = 230
    cc.save_video(path, data, fps=8)
    return data


def _scan_of(path: Path, shape: tuple[int, int, int]) -> None:
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)


def test_a_short_clip_is_refused_unless_frames_may_repeat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """frames=16 on a 3-frame clip gave T = 3 on today's main; now one line, or 16 frames with repeat=True (each
    frame repeated evenly), and the command line's --frames / --repeat-frames."""
    _clip(tmp_path / "short.mp4", 3)
    with pytest.raises(cc.ClassContrastError, match="has 3 frames, fewer than the 16 asked for"):
        cc.load_video(tmp_path / "short.mp4", frames=16)
    stretched = cc.load_video(tmp_path / "short.mp4", frames=7, repeat=True)
    every = cc.load_video(tmp_path / "short.mp4")
    assert stretched.shape[1] == 7
    for t, source in enumerate(cc.data.video.evenly(3, 7, repeat=True)):
        assert torch.equal(stretched[:, t], every[:, source])
    assert cc.data.video.evenly(3, 7, repeat=True) == [0, 0, 1, 1, 1, 2, 2]
    assert run(["explain", str(tmp_path / "short.mp4"), "--model", "torchvision:r3d_18", "--weights", "none",
                "--out", str(tmp_path / "w.png")]) == 2
    _scan_of(tmp_path / "odd.nii.gz", (30, 32, 32))
    for argv in (["explain", str(tmp_path / "short.mp4"), "--model", "torchvision:r3d_18", "--weights", "none"],
                 ["explain", str(tmp_path / "odd.nii.gz"), "--model", "monai:unet", "--weights", "none"],
                 ["explain", str(tmp_path / "odd.nii.gz"), "--model", "monai:unet", "--weights", "none",
                  "--max-voxels", "100"]):
        assert run([*argv, "--out", str(tmp_path / "w.png")]) == 2
        assert "--skip-bad" not in capsys.readouterr().err  # the hint is for files that cannot be read


def _rotated(source: Path, target: Path, degrees: int) -> None:
    """``source`` with a display rotation of ``degrees`` (FFmpeg's command line; skipped without it)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("FFmpeg's command line is not installed (make test installs it)")
    for args in (["-display_rotation:v:0", str(degrees), "-i", str(source), "-c", "copy"],
                 ["-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}"]):
        done = subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, str(target)], capture_output=True)
        if done.returncode == 0:
            return
    pytest.skip("this FFmpeg cannot set a display rotation")


@pytest.mark.parametrize("degrees", [90, 270])
def test_a_rotated_clip_comes_back_upright(tmp_path: Path, degrees: int) -> None:
    """A phone's portrait clip stored landscape with a rotation: both backends return it as FFmpeg shows it (today's
    main returned it landscape from PyAV)."""
    data = _clip(tmp_path / "land.mp4", 4)
    _rotated(tmp_path / "land.mp4", tmp_path / "turned.mp4", degrees)
    stored = cc.load_video(tmp_path / "land.mp4", backend="pyav")
    want = torch.rot90(stored, 1 if degrees == 90 else 3, dims=(-2, -1))  # FFmpeg's player turns it so
    assert data.shape[1:3] == (48, 64) and want.shape[-2:] == (64, 48)
    backends = ["pyav"] + (["torchcodec"] if cc.data.video._torchcodec() is not None else [])
    for backend in backends:
        try:
            got = cc.load_video(tmp_path / "turned.mp4", backend=backend)
        except cc.ClassContrastError as e:  # torchcodec without FFmpeg's libraries
            assert backend == "torchcodec" and "FFmpeg's shared libraries" in str(e)
            continue
        assert got.shape == want.shape and float((got - want).abs().max()) < 2 / 255, backend


class _Counting:
    """PyAV's container with every frame it decodes counting its conversions to arrays (``converted``)."""

    converted = 0

    def __init__(self, container: object) -> None:
        self.container = container

    def __enter__(self) -> _Counting:
        self.container.__enter__()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.__exit__(*exc)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.container, name)

    def decode(self, *args: object) -> object:
        for frame in self.container.decode(*args):  # type: ignore[attr-defined]
            yield _Frame(frame)


class _Frame:
    def __init__(self, frame: object) -> None:
        self.frame = frame

    def __getattr__(self, name: str) -> object:
        return getattr(self.frame, name)

    def to_ndarray(self, *args: object, **kwargs: object) -> np.ndarray:
        _Counting.converted += 1
        return self.frame.to_ndarray(*args, **kwargs)  # type: ignore[attr-defined]


def test_only_the_frames_kept_are_decoded_into_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """frames=4 of a 60-frame clip converts and keeps four frames (today's main held all 60 as arrays: a 1,500-frame
    640×480 clip peaked at 2 GB); the frames are those every frame's reading has at the same places."""
    _clip(tmp_path / "long.mp4", 60, 72, 96)
    every = cc.load_video(tmp_path / "long.mp4", backend="pyav")
    opened = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _Counting(opened(*a, **k)))
    _Counting.converted = 0
    clip = cc.load_video(tmp_path / "long.mp4", frames=4, backend="pyav")
    assert clip.shape == (3, 4, 72, 96) and _Counting.converted == 4
    for t, i in enumerate(cc.data.video.evenly(60, 4)):
        assert torch.equal(clip[:, t], every[:, i])


def test_the_clip_budgets_are_checked_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames above the images' pixel budget, or more frames × pixels than a clip may hold, are refused in one line
    naming the file before any frame is decoded."""
    from PIL import Image

    _clip(tmp_path / "c.mp4", 5)
    with pytest.raises(cc.ClassContrastError, match=r"c.mp4: 5 frames of 64×48 .* more than a clip may hold"):
        cc.load_video(tmp_path / "c.mp4", max_pixels=5 * 64 * 48 - 1)
    assert cc.load_video(tmp_path / "c.mp4", max_pixels=5 * 64 * 48).shape[1] == 5
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    decoded = []
    monkeypatch.setattr(cc.data.video, "_decode_chosen", lambda *a: decoded.append(1))
    with pytest.raises(cc.ClassContrastError, match="its frames are 64×48 pixels, more than an image may have"):
        cc.load_video(tmp_path / "c.mp4", backend="pyav")
    assert not decoded


def _big_header(path: Path, shape: tuple[int, int, int]) -> None:
    """A small .nii.gz whose header claims ``shape`` (uint8): its data is cut short, as a hostile file's may be."""
    nibabel = pytest.importorskip("nibabel")
    header = nibabel.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(shape)
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + bytes(4096))


def test_a_volume_header_beyond_the_voxel_budget_is_refused_before_reading(tmp_path: Path) -> None:
    """A header saying 1024 × 1024 × 512 (a 521 KB file peaked at 4.7 GB on today's main) is one line naming the file
    and the size, from the header alone; --max-voxels / max_voxels raises the budget."""
    _big_header(tmp_path / "huge.nii.gz", (1024, 1024, 512))
    with pytest.raises(cc.ClassContrastError, match=r"huge.nii.gz: its header says 1024×1024×512 = 536,870,912 voxels"):
        cc.load_volume(tmp_path / "huge.nii.gz")
    _big_header(tmp_path / "small.nii.gz", (8, 8, 8))
    cc.load_volume(tmp_path / "small.nii.gz", max_voxels=512)
    with pytest.raises(cc.ClassContrastError, match="more than a volume may have"):
        cc.load_volume(tmp_path / "small.nii.gz", max_voxels=511)


def test_a_volume_with_a_nan_voxel_is_named_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One NaN voxel stopped today's main's whole run without naming the file, and --skip-bad did not skip it."""
    nibabel = pytest.importorskip("nibabel")
    for name, seed in (("ok.nii.gz", 0), ("hole.nii.gz", 1)):
        data = np.random.default_rng(seed).normal(size=(32, 32, 32)).astype(np.float32)
        if name == "hole.nii.gz":
            data[3, 4, 5] = np.nan
        nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / name)
    base = ["explain", str(tmp_path / "ok.nii.gz"), str(tmp_path / "hole.nii.gz"), "--model", "monai:unet",
            "--weights", "none", "--method", "gradient", "--top-k", "1", "--out", str(tmp_path / "w.png")]
    capsys.readouterr()
    assert run(base) == 2
    err = capsys.readouterr().err
    assert "hole.nii.gz holds 1 NaN or infinite voxel" in err and "--skip-bad" in err and err.count("\n") == 1
    assert run([*base, "--skip-bad"]) == 0
    assert "skipped" in capsys.readouterr().err


def test_inputs_the_model_does_not_take_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clip or a volume given to the default image model was a TypeError from the image resize on today's main."""
    nibabel = pytest.importorskip("nibabel")
    _clip(tmp_path / "walk.mp4", 4)
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), tmp_path / "brain.nii.gz")
    for path, kind in (("walk.mp4", "a video clip"), ("brain.nii.gz", "a 3-D volume")):
        capsys.readouterr()
        assert run(["explain", str(tmp_path / path), "--out", str(tmp_path / "w.png")]) == 2
        err = capsys.readouterr().err
        assert f"is {kind}, but the model efficientnet_lite0 takes images" in err and err.count("\n") == 1
        assert "--skip-bad" not in err  # every input of the run would meet it


@pytest.mark.parametrize(("size", "match"), [((0, 5), "size must be"), ((10,), "size must be"), (2.5, "size must be"),
                                             (0, "size must be"), (-3, "size must be")])
def test_bad_video_sizes_are_one_line(tmp_path: Path, size: object, match: str) -> None:
    _clip(tmp_path / "c.mp4", 2)
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.load_video(tmp_path / "c.mp4", size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("frames", "match"), [
    (np.zeros((3, 1, 1, 3), np.uint8), "too small for a video"),
    (np.zeros((3, 8, 8, 2), np.uint8), "3 colour channels"),
    (np.zeros((0, 8, 8, 3), np.uint8), "no frames to write"),
    (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN or infinite"),
])
def test_save_video_refuses_what_it_cannot_write(tmp_path: Path, frames: np.ndarray, match: str) -> None:
    """Today's main crashed on 1×1 and 2-channel frames and returned a path it did not write for no frames."""
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.save_video(tmp_path / "v.mp4", frames)
    assert not (tmp_path / "v.mp4").exists()
    grey = cc.save_video(tmp_path / "g.mp4", np.zeros((2, 8, 8, 1), np.uint8))
    assert cc.load_video(grey).shape == (3, 2, 8, 8)


class _NoFFmpeg:
    """torchcodec's decoder as it is on a machine without FFmpeg's shared libraries: it imports, then fails."""

    def __init__(self, path: str) -> None:
        raise RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed")


def test_a_torchcodec_without_ffmpeg_falls_back_to_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """make demo installs torchcodec, which cannot find FFmpeg's libraries on a fresh machine: every clip failed on
    today's main ("Could not load libtorchcodec", cut mid-sentence). Now PyAV reads them; asked for by name,
    torchcodec's failure is one whole line; --video-backend chooses."""
    _clip(tmp_path / "c.mp4", 4)
    want = cc.load_video(tmp_path / "c.mp4", backend="pyav")
    monkeypatch.setattr(cc.data.video, "_torchcodec", lambda: _NoFFmpeg)
    assert torch.equal(cc.load_video(tmp_path / "c.mp4"), want)
    with pytest.raises(cc.ClassContrastError, match=r"torchcodec cannot load FFmpeg's shared libraries .* pyav"):
        cc.load_video(tmp_path / "c.mp4", backend="torchcodec")
    with pytest.raises(cc.ClassContrastError, match="could not be read as a video"):
        (tmp_path / "bad.mp4").write_bytes(b"not a video")
        cc.load_video(tmp_path / "bad.mp4")
    base = ["explain", str(tmp_path / "c.mp4"), "--model", "torchvision:r3d_18", "--weights", "none", "--frames", "4",
            "--top-k", "1", "--out", str(tmp_path / "w.png")]
    assert run([*base, "--video-backend", "pyav"]) == 0
    capsys.readouterr()
    assert run([*base, "--video-backend", "torchcodec"]) == 2
    err = capsys.readouterr().err
    assert "cannot load FFmpeg's shared libraries" in err and "--skip-bad" not in err
