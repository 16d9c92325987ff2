"""Reading and writing clips: frames as a (C, T, H, W) tensor in [0, 1], through PyAV (FFmpeg's Python binding;
``pip install "classcontrast[video]"``) or, where it is installed and finds FFmpeg, PyTorch's torchcodec; both
imported only here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ClassContrastError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"})


def _av():
    try:
        import av
    except ImportError as e:
        raise ClassContrastError("reading videos needs PyAV: pip install 'classcontrast[video]' (or pip install av)") \
            from e
    return av


def evenly(total: int, frames: int) -> list[int]:
    """``frames`` frame indices spread evenly over ``total`` frames (the centre of each of ``frames`` equal
    segments, as torchvision's video models are fed); all of them when ``frames`` >= ``total``."""
    if frames >= total:
        return list(range(total))
    return [int((i + 0.5) * total / frames) for i in range(frames)]


BACKENDS = ("torchcodec", "pyav")


def _torchcodec() -> object | None:
    """torchcodec's ``VideoDecoder`` where torchcodec is installed and loads (it needs FFmpeg's shared libraries on
    the system), else None."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # not installed, or without FFmpeg's libraries (its loader raises RuntimeError, OSError)
        return None
    return VideoDecoder


def _decode(p: Path, backend: str | None) -> tuple[list[np.ndarray] | Tensor, str]:
    """Every frame of ``p`` in order — (T, H, W, 3) uint8 arrays (PyAV) or a (T, 3, H, W) uint8 tensor (torchcodec) —
    and the backend that read them."""
    if backend not in (None, *BACKENDS):
        raise ClassContrastError(f"unknown video backend {backend!r}; choose {' or '.join(BACKENDS)}")
    decoder = _torchcodec() if backend in (None, "torchcodec") else None
    if decoder is not None:
        try:
            return decoder(str(p))[:], "torchcodec"  # type: ignore[operator]
        except (RuntimeError, ValueError, IndexError, OSError) as e:
            raise ClassContrastError(f"{p} could not be read as a video ({type(e).__name__}: {e})".splitlines()[0]) \
                from e
    if backend == "torchcodec":
        raise ClassContrastError("torchcodec is not installed or cannot find FFmpeg's libraries: pip install "
                                 "torchcodec and install FFmpeg, or use backend='pyav'")
    av = _av()
    try:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], "pyav"
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as e:
        raise ClassContrastError(f"{p} could not be read as a video ({type(e).__name__}: {e})".splitlines()[0]) from e


def load_video(path: str | os.PathLike[str], frames: int | None = None, size: int | Sequence[int] | None = None,
               backend: str | None = None) -> Tensor:
    """A clip as a (C, T, H, W) float tensor in [0, 1], RGB, frames in order.

    Args:
        path: a video file FFmpeg reads (MP4, AVI, MOV, MKV, WebM, GIF, ...).
        frames: None for every frame; N for N frames evenly spaced over the clip (what a video classifier
            expects, e.g. 16 for torchvision's ``r3d_18``).
        size: None keeps the frames' size; an int resizes the shorter side to it, (h, w) to exactly that
            (bilinear, antialiased).
        backend: ``"torchcodec"`` (PyTorch's decoder; it needs FFmpeg's shared libraries on the system),
            ``"pyav"``, or None: torchcodec where it is installed and loads, else PyAV. Both decode with FFmpeg and
            convert to RGB with its swscale: the same frames (tested where both load).
    """
    p = Path(path)
    if not p.is_file():
        raise ClassContrastError(f"no such file: {p}")
    if frames is not None and (isinstance(frames, bool) or int(frames) != frames or frames < 1):
        raise ClassContrastError(f"frames must be a whole number of at least 1, got {frames!r}")
    decoded, used = _decode(p, backend)
    if len(decoded) == 0:
        raise ClassContrastError(f"{p} has no video frames")
    chosen = evenly(len(decoded), frames) if frames is not None else list(range(len(decoded)))
    if used == "torchcodec":
        clip = decoded[chosen].permute(1, 0, 2, 3).float().div(255)  # type: ignore[call-overload]  # (C, T, H, W)
    else:
        clip = torch.from_numpy(np.stack([decoded[i] for i in chosen])).permute(3, 0, 1, 2).float().div(255)
    if size is not None:
        h, w = clip.shape[-2:]
        if isinstance(size, int):
            scale = size / min(h, w)
            new = (max(1, round(h * scale)), max(1, round(w * scale)))
        else:
            new = (int(size[0]), int(size[1]))
        clip = torch.nn.functional.interpolate(clip.transpose(0, 1), size=new, mode="bilinear",
                                               align_corners=False, antialias=True).transpose(0, 1).clamp(0, 1)
    return clip.contiguous()


def save_video(path: str | os.PathLike[str], frames: Tensor | np.ndarray, fps: float = 8.0) -> Path:
    """Write frames — (T, H, W, 3) uint8 or a (C, T, H, W) / (T, H, W, C) float tensor in [0, 1] — as an H.264
    MP4 (sides made even, as the codec needs)."""
    av = _av()
    arr = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    if arr.ndim != 4:
        raise ClassContrastError(f"frames must have 4 dimensions (T, H, W, 3), got shape {arr.shape}")
    if arr.shape[0] == 3 and arr.shape[-1] != 3:  # (C, T, H, W)
        arr = arr.transpose(1, 2, 3, 0)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    h, w = arr.shape[1] // 2 * 2, arr.shape[2] // 2 * 2
    arr = np.ascontiguousarray(arr[:, :h, :w, :3])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(p), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p


__all__ = ["VIDEO_SUFFIXES", "evenly", "load_video", "save_video"]
