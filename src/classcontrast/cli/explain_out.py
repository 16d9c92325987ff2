"""What ``classcontrast explain`` writes: the figures (one writer for images of one size, images of their own
sizes, clips and volumes), the arrays (``--save-maps``: ``.npz``, or NIfTI maps aligned with a scan) and the
overlay video of a clip (``--video``). Torch is imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClassContrastError
from ..text import printable
from .checks import output_path
from .common import console

MAX_ROWS = 8  # rows (images × targets) one figure holds
CLIP_FRAMES = 4  # frames a clip's figure shows


def split(columns: dict[tuple[str, str], list[Any]]) -> list[dict[tuple[str, str], Any]]:
    """Per image, its explanation under every (method, contrast), from the explanations of each batch."""
    out: list[dict[tuple[str, str], Any]] = []
    for batch, first in enumerate(next(iter(columns.values()))):
        n = first.targets.shape[0]
        for i in range(n):
            out.append({key: results[batch] if n == 1 else results[batch][i] for key, results in columns.items()})
    return out


def print_notes(images: list[dict[tuple[str, str], Any]], names: list[str], categories: list[str]) -> None:
    """One line per map the figures draw as a note: a foil equal to its target ("nothing to explain") and a map
    numerically zero against its score (`Explanation.negligible`: drawn as zero, "≈ 0")."""
    from ..viz.grid import NEGLIGIBLE_NOTE

    for name, image in zip(names, images, strict=True):
        for (method, contrast), e in image.items():
            same, negligible = e.foil_is_target(), e.negligible()
            for j, t in enumerate(e.targets[0].tolist()):
                if e.selected is not None and not bool(e.selected[0, j]):
                    continue
                unit = e.units[0][j] if e.units and j < len(e.units[0]) else {}
                which = f"object {unit['index']} ({categories[t]})" if "index" in unit else categories[t]
                where = f"note: {printable(name)}, {printable(which)}: {column_title(method, contrast)}"
                if same is not None and bool(same[0, j]):
                    console.print(f"{where}: the foil is the target itself, nothing to explain", soft_wrap=True)
                elif negligible is not None and bool(negligible[0, j]):
                    score = float(e.scores[0, j])
                    console.print(f"{where}: {NEGLIGIBLE_NOTE.format(score=score)} (drawn as zero)", soft_wrap=True)


def print_table(loaded: list[Any], p: Any, targets: Any, categories: list[str], selected: Any = None,
                what: str = "probability") -> None:
    """The explained classes of each image with their probability (for a region: the mean over its pixels or
    voxels, which the header says — the regions' means need not sum to 1; with --threshold only the classes above
    it)."""
    from rich.table import Table

    table = Table(title="Top classes")
    table.add_column("image")
    table.add_column(f"explained classes ({what})")
    for i, path in enumerate(loaded):
        cells = [f"{categories[int(c)]} ({float(p[i, j]):.3f})" for j, c in enumerate(targets[i])
                 if selected is None or bool(selected[i, j])]
        table.add_row(printable(path.name), printable(", ".join(cells)))
    console.print(table)


def column_title(method: str, contrast: str, qualified: bool = True) -> str:
    """A figure column's title: ``gradcam · weighted``, ``gradcam · rather than Egyptian cat``."""
    from ..viz.grid import readable

    return readable(f"{method} · {contrast}" if qualified else contrast)


def write_figures(images: list[dict[tuple[str, str], Any]], pixels: list[Any], names: list[str], volumes: list[bool],
                  categories: list[str], scale: str, out: Path, paths: list[Path], qualified: bool) -> list[Path]:
    """The figures of a run: every image in one figure (``out``) when they have one size and fit (``MAX_ROWS``
    rows); otherwise one figure per input at ``paths`` (`output_path`: ``why_000_<name>.png``) — a clip as a strip
    of frames, a volume as three orthogonal slices through the explained region's centre. Several methods with
    several contrasts are laid out as a grid, a row per method and a column per contrast (`plot_grid`), instead of
    one row of every pair."""
    from ..explanation import Explanation
    from ..viz.views import clip_views, volume_views

    k = next(iter(images[0].values())).targets.shape[1]
    methods = list(dict.fromkeys(m for m, _ in images[0]))
    grid = len(methods) > 1 and len(images[0]) > len(methods)
    per_row = len(methods) if grid else 1
    flat = all(p.ndim == 3 for p in pixels) and len({tuple(p.shape) for p in pixels}) == 1
    if flat and len(images) * k * per_row <= MAX_ROWS:
        merged = {key: Explanation.cat([im[key] for im in images]) for key in images[0]}
        _draw(pixels, merged, grid, qualified, categories, scale, names, out)
        return [out]
    written = []
    for i, (image, px) in enumerate(zip(images, pixels, strict=True)):
        path = paths[i]
        if px.ndim == 3:
            shown, views, titles = [px], dict(image), [names[i]]
        else:
            keyed = {column_title(m, c): e for (m, c), e in image.items()}
            if volumes[i]:
                shown, found, titles = volume_views(px, keyed)
            else:
                shown, found, titles = clip_views(px, keyed, frames=max(1, min(CLIP_FRAMES, MAX_ROWS // k)))
            views = {key: found[column_title(*key)] for key in image}
            titles = [f"{names[i]}\n{t}" for t in titles]  # the name and the view: a line each
        _draw(shown, views, grid, qualified, categories, scale, titles, path)
        written.append(path)
    return written


def _draw(images: list[Any], results: dict[tuple[str, str], Any], grid: bool, qualified: bool, categories: list[str],
          scale: str, titles: list[str], path: Path) -> None:
    """One figure of (method, contrast) results: a grid (a row per method) or one row of every pair."""
    from ..viz.grid import plot_explanations, plot_grid

    if grid:
        by_method: dict[str, dict[str, Any]] = {}
        for (m, c), e in results.items():
            by_method.setdefault(m, {})[c] = e
        plot_grid(images, by_method, categories, scale=scale, titles=titles, path=path)  # type: ignore[arg-type]
    else:
        columns = {column_title(m, c, qualified): e for (m, c), e in results.items()}
        plot_explanations(images, columns, categories, scale=scale, titles=titles, path=path)  # type: ignore[arg-type]


# the prompt's words by the image's method's kind; gradient × embedding otherwise
WORD_METHODS = {"integrated_gradients": "integrated_gradients", "occlusion": "occlusion",
                "feature_ablation": "occlusion"}


def write_answer_figures(bundle: Any, inputs: list[Any], images: list[dict[tuple[str, str], Any]], pixels: list[Any],
                         names: list[str], contrasts: list[Any], question: str, paths: list[Path], qualified: bool
                         ) -> list[Path]:
    """A vision-language model's figures, one per image at ``paths`` (`output_path`): the question, the
    candidates' probabilities, each (method, contrast) map and under it the prompt's words coloured by the same
    contrast for the same targets (gradient × embedding; Integrated Gradients or word occlusion for those
    methods), also printed."""
    from ..engine import explain
    from ..models.prompt import prompt_tokens
    from ..viz.words import plot_answers

    xs = [x[i : i + 1] for x in inputs for i in range(len(x))]
    written = []
    for i, (image, x) in enumerate(zip(images, xs, strict=True)):
        p = next(iter(image.values())).probabilities[0]  # every candidate's (the vocabulary: its five likeliest)
        top = p.topk(min(5, len(p))).indices.tolist() if len(p) > 10 else range(len(p))
        console.print(f"{printable(names[i])}: " + ", ".join(f"{printable(bundle.categories[c])} {float(p[c]):.3f}"
                                                                for c in top))
        net, e = prompt_tokens(bundle, image=x)
        results, words = {}, {}
        for method in dict.fromkeys(m for m, _ in image):
            how = WORD_METHODS.get(method, "gradient_x_input")
            targets = next(ex for (m, _), ex in image.items() if m == method).targets.to(e.device)
            opts = {"window": (e.shape[1], 1)} if how == "occlusion" else {}
            names_ = [name for m, name in image if m == method]  # the contrasts in order (the words' net has no
            found = explain(net, e, how, contrasts, targets, **opts).values()  # class names: foils by index)
            for name, ex in zip(names_, found, strict=True):
                title = column_title(method, name, qualified)
                results[title] = image[(method, name)]
                words[title] = ex.maps[0].detach().cpu()
        for title, values in words.items():
            shown = " ".join(f"{t} {float(v):+.3g}" for t, v in zip(net.tokens, values[0], strict=True))
            console.print(f"words ({printable(title)}): {printable(shown)}")
        path = paths[i]
        plot_answers(pixels[i], results, words, net.tokens, bundle.categories, question, path=path)
        written.append(path)
    return written


def save_arrays(path: Path, images: list[dict[tuple[str, str], Any]], files: list[Path], model: str) -> None:
    """``--save-maps`` as ``.npz``: every map (``maps/<method>/<contrast>``), the targets, logits and
    probabilities, the files and the model, and the explained units (`unit_arrays`). Inputs of one shape are
    stacked (B, K, *S); inputs of their own shapes are stored one by one (``maps/<method>/<contrast>/<i>``,
    ``targets/<i>``)."""
    import numpy as np
    import torch

    from ..contrast_base import head_probabilities

    arrays: dict[str, Any] = {}
    same = len({tuple(next(iter(im.values())).maps.shape) for im in images}) == 1
    if same:
        for key in images[0]:
            arrays[npz_key(*key)] = torch.cat([im[key].maps for im in images]).float().cpu().numpy()
        first = [next(iter(im.values())) for im in images]
        y = torch.cat([e.logits for e in first]).float().cpu()
        arrays |= {"targets": torch.cat([e.targets for e in first]).cpu().numpy(), "logits": y.numpy(),
                   "probabilities": head_probabilities(y, first[0].head, 1).numpy()}
        if first[0].selected is not None:
            arrays["selected"] = torch.cat([e.selected for e in first]).cpu().numpy()
        arrays |= unit_arrays([u for e in first for u in e.units])
    else:
        for i, im in enumerate(images):
            for key, e in im.items():
                arrays[f"{npz_key(*key)}/{i}"] = e.maps.float().cpu().numpy()
            e = next(iter(im.values()))
            arrays[f"targets/{i}"] = e.targets.cpu().numpy()
            arrays |= unit_arrays(e.units, f"/{i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays, files=np.array([str(p) for p in files]), model=np.array(model))
    console.print(f"wrote {path}")


def nifti_paths(path: Path, keys: list[tuple[str, str]], names: list[str]) -> list[list[Path]]:
    """Per input, the NIfTI file of each (method, contrast) map of ``--save-maps x.nii.gz`` (`output_path`):
    ``x.nii.gz`` for one map of one volume, ``x_<method>_<contrast>.nii.gz`` for several maps,
    ``..._<index>_<volume>.nii.gz`` for several volumes."""
    several = len(keys) > 1
    return [[output_path(path, i, name, len(names), *(key if several else ())) for key in keys]
            for i, name in enumerate(names)]


def save_nifti(path: Path, images: list[dict[tuple[str, str], Any]], affines: list[Any], names: list[str],
               positions: list[int], count: int) -> None:
    """``--save-maps x.nii.gz`` for volumes: each (method, contrast) map as a NIfTI file with the scan's affine
    (it opens aligned with the scan in any viewer), the targets on the 4th dimension when several; named by
    `nifti_paths` (input ``positions[i]`` of the run's ``count``)."""
    from ..data.volume import save_volume

    keys = list(images[0])
    for i, image in enumerate(images):
        if affines[i] is None:
            raise ClassContrastError(f"--save-maps {path}: NIfTI maps are for NIfTI volumes; {names[i]} is not one "
                                     "(give --save-maps a .npz)")
        targets = [output_path(path, positions[i], names[i], count, *(key if len(keys) > 1 else ())) for key in keys]
        for target, e in zip(targets, image.values(), strict=True):
            written = save_volume(target, e.shown()[0].float().cpu(), affines[i])  # (K, D, H, W)
            console.print(f"wrote {written}")


def save_clip_video(path: Path, image: dict[tuple[str, str], Any], pixels: Any, fps: float = 8.0) -> None:
    """``--video``: the clip and, beside it, each (method, contrast) map of its first target, frame by frame (one
    video per clip, named by `output_path`)."""
    import numpy as np

    from ..data.video import save_video
    from ..viz.overlay import greyscale, halfrange, signed_rgba

    frames = pixels.permute(1, 2, 3, 0).float().cpu().numpy()  # (T, H, W, 3)
    panels = [frames]
    for e in image.values():
        maps = e.shown()[0, 0].float().cpu().numpy()  # (T, H, W)
        scale = halfrange(maps)
        shown = []
        for t in range(len(frames)):
            rgba = signed_rgba(maps[t], scale)
            grey = greyscale(frames[t])
            shown.append(grey * (1 - rgba[..., 3:]) + rgba[..., :3] * rgba[..., 3:])
        panels.append(np.stack(shown))
    written = save_video(path, np.concatenate(panels, axis=2), fps=fps)
    console.print(f"wrote {written}")


def unit_arrays(units: list[list[Any]], suffix: str = "") -> dict[str, Any]:
    """What ``--save-maps`` stores of the explained units, so a script can redraw them: the units' kind's own
    arrays (`classcontrast.units.records.Unit.arrays`: regions' bit-packed masks, objects' boxes, labels, scores
    and indices; nothing for whole images)."""
    return type(units[0][0]).arrays(units, suffix)


def npz_key(method: str, contrast: str) -> str:
    """The ``--save-maps`` array name: ``maps/gradcam/original``, ``maps/gradcam/foil:Egyptian cat``
    (printable ASCII: other characters as ``\\uXXXX`` escapes, ``/`` in a class name as ``\\x2f``)."""
    def ascii_(text: str) -> str:
        text = text.replace("\\", "\\x5c").replace("/", "\\x2f")
        return "".join(ch if 32 <= ord(ch) < 127 else ch.encode("unicode_escape").decode("ascii") for ch in text)

    return f"maps/{ascii_(method)}/{ascii_(contrast)}"


__all__ = ["column_title", "nifti_paths", "npz_key", "save_arrays", "save_clip_video", "save_nifti", "split",
           "unit_arrays", "write_figures"]
