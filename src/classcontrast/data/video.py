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

from ..errors import ClassContrastError, first_line
from .budgets import CLIP_PIXELS, check_clip

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"})


def _av():
    try:
        import av
    except ImportError as e:
        raise ClassContrastError("reading videos needs PyAV: pip install 'classcontrast[video]' (or pip install av)") \
            from e
    return av


def evenly(total: int, frames: int, repeat: bool = False) -> list[int]:
    """``frames`` frame indices spread evenly over ``total`` frames (the centre of each of ``frames`` equal
    segments, as torchvision's video models are fed); when ``frames`` >= ``total``: all of them, or with ``repeat``
    ``frames`` indices that repeat frames evenly (a short clip stretched to the model's length)."""
    if frames >= total and not repeat:
        return list(range(total))
    return [min(total - 1, int((i + 0.5) * total / frames)) for i in range(frames)]


BACKENDS = ("torchcodec", "pyav")


def _torchcodec() -> object | None:
    """torchcodec's ``VideoDecoder`` where torchcodec is installed, else None (whether it finds FFmpeg's shared
    libraries shows when it decodes)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # not installed, or failing at import (its loader raises RuntimeError, OSError)
        return None
    return VideoDecoder


_UNREADABLE = "{p} could not be read as a video ({name}: {text})"


def _unreadable(p: Path, e: BaseException) -> ClassContrastError:
    return ClassContrastError(_UNREADABLE.format(p=p, name=type(e).__name__, text=first_line(e).rstrip(":")))


def _by_torchcodec(decoder: object, p: Path, frames: int | None, repeat: bool, limit: int) -> Tensor:
    """The chosen frames (T, 3, H, W) uint8, decoded by torchcodec (which applies the stream's rotation)."""
    d = decoder(str(p))  # type: ignore[operator]
    total, height, width = int(d.metadata.num_frames or len(d)), int(d.metadata.height), int(d.metadata.width)
    chosen = _chosen(p, total, frames, repeat)
    check_clip(p, len(chosen), height, width, limit)
    return d.get_frames_at(indices=chosen).data


def _count(container: object, stream: object) -> int:
    """A stream's frame count: its header's, or its packets counted without decoding them."""
    if int(getattr(stream, "frames", 0) or 0) > 0:
        return int(stream.frames)  # type: ignore[attr-defined]
    n = sum(1 for packet in container.demux(stream) if packet.size)  # type: ignore[attr-defined]
    container.seek(0)  # type: ignore[attr-defined]
    return n


def _by_pyav(p: Path, frames: int | None, repeat: bool, limit: int) -> list[np.ndarray]:
    """The chosen frames as (H, W, 3) uint8 arrays, decoded by PyAV; the budgets checked from the header first, and
    only the chosen frames converted and kept (memory: the frames asked for, not the clip), each turned upright by
    the stream's rotation as FFmpeg's player shows it. A header whose frame count is wrong is read again with the
    count decoding found."""
    av = _av()
    try:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            height, width = int(stream.codec_context.height), int(stream.codec_context.width)
            chosen = _chosen(p, _count(container, stream), frames, repeat)
            check_clip(p, len(chosen), height, width, limit)
            kept, found = _decode_chosen(container, stream, chosen)
        if len(kept) < len(chosen):  # the header's count was not the stream's: choose among the frames there are
            chosen = _chosen(p, found, frames, repeat)
            with av.open(str(p)) as container:
                kept, _ = _decode_chosen(container, container.streams.video[0], chosen)
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as e:
        raise _unreadable(p, e) from e
    return kept


def _decode_chosen(container: object, stream: object, chosen: list[int]) -> tuple[list[np.ndarray], int]:
    """(the frames numbered ``chosen``, upright, as RGB arrays; the number of frames decoding found)."""
    wanted: dict[int, int] = {}
    for i in chosen:
        wanted[i] = wanted.get(i, 0) + 1
    kept: list[np.ndarray] = []
    found = 0
    for index, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
        found = index + 1
        if index in wanted:
            arr = frame.to_ndarray(format="rgb24")
            turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
            arr = np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr
            kept.extend([arr] * wanted[index])
    return kept, found


def _chosen(p: Path, total: int, frames: int | None, repeat: bool) -> list[int]:
    """The frame indices read: all, or ``frames`` spread evenly; a clip shorter than ``frames`` is refused unless
    frames may repeat."""
    if total == 0:
        raise ClassContrastError(f"{p} has no video frames")
    if frames is None:
        return list(range(total))
    if frames > total and not repeat:
        raise ClassContrastError(f"{p} has {total} frame{'s' if total != 1 else ''}, fewer than the {frames} asked "
                                 "for (the model's clip length): give a longer clip, fewer frames (--frames), or "
                                 "repeat frames (--repeat-frames, repeat=True)")
    return evenly(total, frames, repeat)


def _check_size(size: object) -> int | tuple[int, int] | None:
    """``size``: None, a whole number >= 1 (the shorter side) or (height, width) of them; else one line."""
    def whole(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if size is None or whole(size):
        return size  # type: ignore[return-value]
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(whole(v) for v in size):
        return int(size[0]), int(size[1])
    raise ClassContrastError(f"size must be a whole number >= 1 (the shorter side) or (height, width), got {size!r}")


def load_video(path: str | os.PathLike[str], frames: int | None = None, size: int | Sequence[int] | None = None,
               backend: str | None = None, repeat: bool = False, max_pixels: int = CLIP_PIXELS) -> Tensor:
    """A clip as a (C, T, H, W) float tensor in [0, 1], RGB, frames in order, upright (the stream's rotation applied,
    as EXIF orientation is for images).

    Args:
        path: a video file FFmpeg reads (MP4, AVI, MOV, MKV, WebM, GIF, ...).
        frames: None for every frame; N for N frames evenly spaced over the clip (what a video classifier
            expects, e.g. 16 for torchvision's ``r3d_18``). A clip with fewer frames is refused in one line
            unless ``repeat``.
        size: None keeps the frames' size; an int resizes the shorter side to it, (h, w) to exactly that
            (bilinear, antialiased).
        backend: ``"torchcodec"`` (PyTorch's decoder; it needs FFmpeg's shared libraries on the system),
            ``"pyav"``, or None: torchcodec where it is installed and decodes, else PyAV (a torchcodec that cannot
            load FFmpeg's libraries falls back to PyAV). Both decode with FFmpeg and convert to RGB with its
            swscale: the same frames (tested where both load).
        repeat: with ``frames`` longer than the clip, repeat frames evenly instead of refusing.
        max_pixels: the budget of frames × height × width read (`classcontrast.data.budgets`), checked from the
            header before decoding; only the frames kept are decoded into memory.
    """
    p = Path(path)
    if not p.is_file():
        raise ClassContrastError(f"no such file: {p}")
    if frames is not None and (isinstance(frames, bool) or int(frames) != frames or frames < 1):
        raise ClassContrastError(f"frames must be a whole number of at least 1, got {frames!r}")
    size = _check_size(size)
    if backend not in (None, *BACKENDS):
        raise ClassContrastError(f"unknown video backend {backend!r}; choose {' or '.join(BACKENDS)}")
    clip = _decoded(p, frames, backend, repeat, max_pixels)
    if size is not None:
        h, w = clip.shape[-2:]
        if isinstance(size, int):
            scale = size / min(h, w)
            new = (max(1, round(h * scale)), max(1, round(w * scale)))
        else:
            new = size
        clip = torch.nn.functional.interpolate(clip.transpose(0, 1), size=new, mode="bilinear",
                                               align_corners=False, antialias=True).transpose(0, 1).clamp(0, 1)
    return clip.contiguous()


def _decoded(p: Path, frames: int | None, backend: str | None, repeat: bool, limit: int) -> Tensor:
    """(C, T, H, W) in [0, 1] by the backend asked for (None: torchcodec, falling back to PyAV when it fails)."""
    decoder = _torchcodec() if backend in (None, "torchcodec") else None
    if decoder is not None:
        try:
            return _by_torchcodec(decoder, p, frames, repeat, limit).permute(1, 0, 2, 3).float().div(255)
        except ClassContrastError:
            raise
        except Exception as e:  # FFmpeg's libraries missing (then PyAV reads it), or a file it cannot read
            if backend == "torchcodec":
                if "libtorchcodec" in str(e):
                    raise ClassContrastError("torchcodec cannot load FFmpeg's shared libraries (install FFmpeg), or "
                                             "use --video-backend pyav (backend='pyav')") from e
                raise _unreadable(p, e) from e
    elif backend == "torchcodec":
        raise ClassContrastError("torchcodec is not installed: pip install torchcodec (it also needs FFmpeg), or use "
                                 "--video-backend pyav (backend='pyav')")
    kept = _by_pyav(p, frames, repeat, limit)
    return torch.from_numpy(np.stack(kept)).permute(3, 0, 1, 2).float().div(255)


def save_video(path: str | os.PathLike[str], frames: Tensor | np.ndarray, fps: float = 8.0) -> Path:
    """Write frames — (T, H, W, 3) uint8 or a (C, T, H, W) / (T, H, W, C) float tensor in [0, 1], 3 channels (or
    1, grey) — as an H.264 MP4 (sides made even, as the codec needs: at least 2 × 2 pixels)."""
    av = _av()
    arr = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    if arr.ndim != 4:
        raise ClassContrastError(f"frames must have 4 dimensions (T, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):  # (C, T, H, W)
        arr = arr.transpose(1, 2, 3, 0)
    if arr.shape[-1] not in (1, 3):
        raise ClassContrastError(f"frames must have 3 colour channels (or 1), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ClassContrastError("no frames to write")
    if arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ClassContrastError(f"frames of {arr.shape[2]}×{arr.shape[1]} pixels are too small for a video (at "
                                 "least 2×2)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ClassContrastError("frames hold NaN or infinite values")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
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
