"""``classcontrast explain``: signed, class-contrastive maps for images, as a figure and arrays.

Only the option declarations live at module level (no torch): the work imports what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ClassContrastError
from ..text import printable
from . import method_flags as flags
from .checks import FIGURE_SUFFIXES, check_figures, check_number, check_out_file, figure_name
from .common import console, resolve_device
from .evaluate_cmd import TRUST, check_common
from .options import CONTRASTS_HELP, METHODS_HELP, split_values

_MAX_ROWS_PER_FIGURE = 8
BUNDLED = Path("chelsea (bundled cat photo)")  # no image given: the bundled photo
_TASKS = {"classification": "image", "segmentation": "region", "detection": "object"}  # --task: its units


def explain_command(
    images: list[Path] = typer.Argument(None, help="Image files or folders. None: the bundled cat photo."),
    model: str = typer.Option("efficientnet_lite0",
                              help="efficientnet_lite0 | torchvision:<arch> | timm:<arch> | hf:<hub id or folder>"),
    weights: str = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path"),
    num_classes: int = typer.Option(None, help="Class count of a checkpoint with a new head"),
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    contrast: list[str] = typer.Option(["original", "weighted"], "--contrast", "--contrasts",
                                       help=CONTRASTS_HELP),
    top_k: int = typer.Option(2, "--top-k", help="Explain the k most probable classes"),
    target: list[str] = typer.Option(None, help="Explain these classes (index or name) instead of --top-k"),
    threshold: float = typer.Option(None, help="Explain every class with probability >= THRESHOLD instead of "
                                    "--top-k (a multi-label model's labels: use with --head sigmoid)"),
    classes: list[str] = typer.Option(None, "--classes", help="Zero-shot (CLIP-style hf: model): the class names, "
                                      "put into --template as the prompts"),
    template: str = typer.Option("a photo of a {}.", help="Zero-shot: the prompt, {} marking the class name"),
    region: list[str] = typer.Option(None, help="Segmentation models: explain the pixels of these classes "
                                     "(index or name); default: the --top-k largest predicted regions"),
    detections: int = typer.Option(None, help="Detectors: explain the N best detected objects (scoring at least "
                                   "--min-score)"),
    min_score: float = typer.Option(0.5, help="Detectors: the score a detection needs to be explained"),
    task: str = typer.Option(None, help="classification | segmentation | detection: what the model does "
                             "(default: read from its output)"),
    foil: str = typer.Option(None, help="Add the contrast 'target rather than FOIL' (index or name)"),
    contrast_cam: str = typer.Option(None, "--contrast-cam",
                                     help="Add ContrastCAM towards class Q (Prabhushankar et al.; index or name)"),
    layer: str = typer.Option(None, help="Layer for CAM methods (module name, e.g. features.40)"),
    head: str = typer.Option(None, help="softmax (one class among all) | sigmoid (multi-label: each class its "
                             "own decision); default: the model's"),
    relu: bool = typer.Option(False, "--relu/--no-relu",
                              help="Textbook GradCAM/XGradCAM (ReLU on the map); maps stay signed without it"),
    scale: str = typer.Option("map", help="Colour scale: map | row | column | figure"),
    out: Path = typer.Option(Path("why.png"), help="Where to write the figure (PNG)"),
    save_maps: Path = typer.Option(None, help="Also write maps, targets and probabilities (.npz)"),
    html: Path = typer.Option(None, help="Also write the interactive explorer: one self-contained HTML file"),
    batch_size: int = typer.Option(16, help="Images per forward pass"),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N"),
    trust_remote_code: bool = TRUST,
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out images that cannot be read (each one named "
                                  "in a warning) instead of stopping at the first"),
    steps: int = flags.STEPS, baseline: str = flags.BASELINE, integration: str = flags.INTEGRATION,
    samples: int = flags.SAMPLES, sigma: float = flags.SIGMA,
    seed: int = typer.Option(None, help="smoothgrad: noise seed (0)"), squared: bool = flags.SQUARED,
    internal_batch_size: int = flags.INTERNAL_BATCH_SIZE, composite: str = flags.COMPOSITE,
    canonizer: str = flags.CANONIZER,
    keep_channels: bool = typer.Option(None, "--keep-channels",
                                       help="input-space methods: per-channel maps in --save-maps (drawn: their sum)"),
    discard_ratio: float = flags.DISCARD_RATIO, abs_: bool = flags.ABS,
) -> None:
    """Explain why the model picks each class over the others, for every image."""
    import torch

    from ..classes import class_index
    from ..contrasts import Foil, get_contrast
    from ..data.images import list_images
    from ..detection import Detections
    from ..engine import explain
    from ..methods import options_for
    from ..models import load_model
    from ..targets import Threshold, TopK
    from ..units import Region

    dev = resolve_device(device)
    if scale not in {"map", "row", "column", "figure"}:
        raise ClassContrastError(f"unknown --scale {scale!r}; choose map, row, column or figure")
    if top_k < 1:
        raise ClassContrastError("--top-k must be at least 1")
    check_common(None, batch_size=batch_size, num_classes=num_classes)
    for value, option in ((steps, "--steps"), (samples, "--samples"), (internal_batch_size, "--internal-batch-size")):
        check_number(value, option, minimum=1)
    check_number(sigma, "--sigma", minimum=0)
    check_number(discard_ratio, "--discard-ratio", minimum=0, maximum=1)
    methods = split_values(method)
    contrasts = [get_contrast(c) for c in split_values(contrast)]
    given = flags.method_flags(methods, steps=steps, baseline=baseline, integration=integration, samples=samples,
                         sigma=sigma, seed=seed, squared=squared, internal_batch_size=internal_batch_size,
                         composite=composite, canonizer=canonizer, keep_channels=keep_channels,
                         discard_ratio=discard_ratio, abs=abs_)
    opts = {"layer": layer, "relu": relu or None, **given}  # each method takes the ones it has
    if head not in (None, "softmax", "sigmoid"):
        raise ClassContrastError(f"unknown --head {head!r}; choose softmax or sigmoid")
    files = list_images(images) if images else [BUNDLED]  # read batch by batch: no full-size image is kept
    inputs = files if images else []
    check_out_file(out, "--out", inputs, FIGURE_SUFFIXES)  # before any work: never overwrite an input
    check_figures(out, "--out", inputs, images or [], [f.name for f in files])
    check_out_file(save_maps, "--save-maps", inputs, {".npz"})
    check_out_file(html, "--html", inputs, {".html", ".htm"})
    if classes:
        from ..models.zero_shot import load_zero_shot

        bundle = load_zero_shot(model, split_values(classes), template, trust_remote_code).to(dev)
    else:
        bundle = load_model(model, weights=weights, num_classes=num_classes, device=dev,
                            trust_remote_code=trust_remote_code)
    if foil is not None:
        contrasts.append(Foil(class_index(foil, bundle.categories, "--foil")))
    if contrast_cam is not None:
        from ..peer_contrasts import ContrastCAM

        contrasts.append(ContrastCAM(class_index(contrast_cam, bundle.categories, "--contrast-cam")))
    wanted = split_values(target) if target else []
    targets = [class_index(t, bundle.categories, "--target") for t in wanted] or None
    regions = [Region(class_index(r, bundle.categories, "--region")) for r in split_values(region)] if region else None
    if sum(v is not None for v in (targets, regions, threshold, detections)) > 1:
        raise ClassContrastError("give one of --target, --threshold (classifiers), --region (segmentation models) and "
                                 "--detections (detectors)")
    if task not in (None, "classification", "segmentation", "detection"):
        raise ClassContrastError(f"unknown --task {task!r}; choose classification, segmentation or detection")
    check_number(min_score, "--min-score", minimum=0, maximum=1)
    if detections is not None:
        check_number(detections, "--detections", minimum=1)
    objects = Detections(top=detections or top_k, threshold=min_score) if detections or task == "detection" else None
    if task == "segmentation" and regions is None:
        regions = Region.all(top_k)  # type: ignore[assignment]
    if task == "classification" and regions is not None:
        raise ClassContrastError("--region needs a segmentation model, not --task classification")
    if threshold is not None:
        check_number(threshold, "--threshold", minimum=0, maximum=1)
        threshold_spec = Threshold(threshold, 1)  # K grows to the most any batch has (see _same_k)
    if targets is None and top_k > bundle.num_classes:
        raise ClassContrastError(f"--top-k {top_k} exceeds the model's {bundle.num_classes} classes")
    if getattr(bundle.preprocess, "crop", 0) is None:  # images keep their own sizes: one per batch
        batch_size = 1

    columns: dict[tuple[str, str], list[Any]] = {}
    inputs, pixels = [], []

    def explain_batch(x: Any, spec: Any) -> list[tuple[tuple[str, str], Any]]:
        return [((meth, name), ex) for meth in methods
                for name, ex in explain(bundle, x, meth, contrasts, spec, head=head, **options_for(meth, opts)).items()]

    loaded: list[Path] = []  # the images explained, in order (without the unreadable ones --skip-bad skipped)
    for start in range(0, len(files), batch_size):
        chunk, x = _read(files[start : start + batch_size], bundle, skip_bad)
        if not chunk:
            continue
        loaded.extend(chunk)
        x = x.to(dev)
        spec = regions or objects or (threshold_spec if threshold is not None else
                                      TopK(top_k) if targets is None else [targets] * len(chunk))
        for key, ex in explain_batch(x, spec):
            columns.setdefault(key, []).append(ex)
        first = next(iter(columns.values()))[-1]
        kind = first.units[0][0]["kind"]
        if region:  # a region asked for by name that an image does not have: one line, before any file
            for i, image_units in enumerate(first.units):
                empty = next((u for u in image_units if u.get("pixels") == 0), None)
                if empty is not None:
                    raise ClassContrastError(f"--region {bundle.categories[empty['target']]}: "
                                             f"{printable(chunk[i].name)} has no pixel of that class")
        if task is not None and _TASKS[task] != kind:
            found = next(name for name, unit in _TASKS.items() if unit == kind)
            raise ClassContrastError(f"--task {task}: this model's output is a {found} model's")
        inputs.append(x)
        pixels.extend(bundle.normalize.inverse(x).cpu())
    if not loaded:
        raise ClassContrastError("none of the images could be read (each one is named above)")
    if threshold is not None:  # the same K in every batch: a batch with fewer classes above it, explained again
        threshold_spec = _same_k(columns, inputs, threshold, explain_batch)
    batches = next(iter(columns.values()))
    sizes = {tuple(p.shape[-2:]) for p in pixels}
    t = torch.cat([ex.targets.cpu() for ex in batches])
    selected = [ex.selected for ex in batches]
    _print_table(loaded, torch.cat([ex.target_probabilities.cpu() for ex in batches]), t, bundle.categories,
                 None if selected[0] is None else torch.cat(selected).cpu())
    if len(sizes) > 1:  # images of their own sizes (a segmenter without a crop): one figure and array each
        _write_each(pixels, columns, bundle, scale, loaded, out, save_maps, len(methods) > 1 or len(contrasts) > 1)
    else:
        merged = {k: _cat(v) for k, v in columns.items()}
        titled = {column_title(m, c, len(methods) > 1 or len(contrasts) > 1): e for (m, c), e in merged.items()}
        for w in _write_figures(pixels, titled, bundle.categories, scale, [p.name for p in loaded], out):
            console.print(f"wrote {w}")
        _save_maps(save_maps, merged, t, torch.cat([ex.logits.cpu() for ex in batches]), first.head, selected, loaded,
                   bundle.name)
    if html is not None:
        from ..explorer.compute import write_explorer
        from ..explorer.page import NAMED, PEERS

        named = (*NAMED, *(c.name for c in contrasts if c.name in PEERS))  # the peers' buttons when asked for
        units = regions or objects or (Region.all(top_k) if first.units[0][0]["kind"] == "region" else None)
        page = write_explorer(html, bundle, torch.cat(inputs) if len(sizes) == 1 else inputs, methods,
                              units if units is not None else threshold_spec if threshold is not None else t.to(dev),
                              [p.name for p in loaded],
                              batch_size=batch_size, named=named, head=head,
                              foils=[int(c.foil) for c in contrasts if isinstance(c, Foil)], **opts)
        console.print(f"wrote {page}")


def _save_maps(save_maps: Path | None, merged: dict[tuple[str, str], Any], t: Any, y: Any, head: str,
               selected: list[Any], loaded: list[Any], model: str) -> None:
    """``--save-maps`` for images of one size: every map, the targets, logits, probabilities, the units."""
    import numpy as np
    import torch

    from ..contrast_base import head_probabilities

    if save_maps is not None:
        save_maps.parent.mkdir(parents=True, exist_ok=True)
        p_all = head_probabilities(y.float(), head, 1)
        np.savez_compressed(
            save_maps,
            **{npz_key(m, c): v.maps.float().cpu().numpy() for (m, c), v in merged.items()},
            targets=t.numpy(), logits=y.float().numpy(), probabilities=p_all.numpy(),
            **({} if selected[0] is None else {"selected": torch.cat(selected).cpu().numpy()}),
            files=np.array([str(p) for p in loaded]), model=np.array(model),
            **unit_arrays(next(iter(merged.values()))),
        )
        console.print(f"wrote {save_maps}")


def _same_k(columns: dict[tuple[str, str], list[Any]], inputs: list[Any], threshold: float, explain_batch: Any) -> Any:
    """--threshold: every batch was explained with the classes at or above the threshold (at least one per
    image, fillers marked), from the explanation's own forward pass; a batch with fewer than the most any
    batch has is explained again with that many, so that all batches stack. None anywhere is an error,
    before any file is written. Returns the Threshold with the common K (for the explorer)."""
    from ..targets import Threshold

    results = next(iter(columns.values()))
    if not any(bool(ex.selected.any()) for ex in results):
        highest = max(float(ex.probabilities.max()) for ex in results)
        raise ClassContrastError(f"--threshold {threshold}: no class reaches it in any image (the highest "
                                 f"probability is {highest:.3g})")
    k = max(ex.targets.shape[1] for ex in results)
    spec = Threshold(threshold, k)
    for i, ex in enumerate(results):
        if ex.targets.shape[1] < k:
            for key, again in explain_batch(inputs[i], spec):
                columns[key][i] = again
    return spec


def _one(e: Any, i: int, n: int) -> Any:
    """Image ``i`` of an explanation of ``n`` images."""
    from ..explanation import Explanation

    def part(t: Any) -> Any:
        return None if t is None else t[i : i + 1]

    return Explanation(e.maps[i : i + 1], e.layer_maps[i : i + 1], e.targets[i : i + 1], e.logits[i : i + 1],
                       e.method, e.contrast, e.layer, foils=part(e.foils), objective=_one_image(e.objective, i, n),
                       units=part(e._units), scores=part(e._scores), target_probabilities=part(e._target_probabilities),
                       head=e.head, selected=part(e.selected))


def _write_each(pixels: list[Any], columns: dict[tuple[str, str], list[Any]], bundle: Any, scale: str,
                loaded: list[Any], out: Path, save_maps: Path | None, qualified: bool) -> None:
    """One figure per image (and, with --save-maps, arrays ``maps/<method>/<contrast>/<image index>``): for
    images of their own sizes, explained one per batch."""
    import numpy as np

    from ..viz import plot_explanations

    arrays: dict[str, Any] = {}
    for i, path in enumerate(loaded):
        results = {column_title(m, c, qualified): v[i] for (m, c), v in columns.items()}
        figure = figure_name(out, i, path.name) if len(loaded) > 1 else out
        plot_explanations(pixels[i : i + 1], results, bundle.categories, scale=scale,  # type: ignore[arg-type]
                          titles=[path.name], path=figure)
        console.print(f"wrote {figure}")
        for (m, c), v in columns.items():
            arrays[f"{npz_key(m, c)}/{i}"] = v[i].maps.float().cpu().numpy()
            arrays[f"targets/{i}"] = v[i].targets.cpu().numpy()
            arrays.update(unit_arrays(v[i], f"/{i}"))
    if save_maps is not None:
        save_maps.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save_maps, **arrays, files=np.array([str(p) for p in loaded]),
                            model=np.array(bundle.name))
        console.print(f"wrote {save_maps}")


def unit_arrays(ex: Any, suffix: str = "") -> dict[str, Any]:
    """What ``--save-maps`` stores of the explained units, so a script can redraw them: regions as
    ``region_masks`` (B, K, H, W) bit-packed along W (``np.unpackbits(..., axis=-1)[..., :W]``); objects as
    ``boxes`` (B, K, 4: x0, y0, x1, y1 in input pixels), ``labels``, ``scores`` and ``detection_index``."""
    import numpy as np

    units = ex.units
    if units[0][0]["kind"] == "image":
        return {}
    if units[0][0]["kind"] == "region":
        masks = np.stack([[u["mask"].cpu().numpy() for u in image] for image in units])
        return {f"region_masks{suffix}": np.packbits(masks, axis=-1)}
    return {f"{name}{suffix}": np.array([[u[key] for u in image] for image in units])
            for name, key in (("boxes", "box"), ("labels", "label"), ("scores", "score"), ("detection_index", "index"))}


def _one_image(objective: Any, i: int, n: int) -> Any:
    """A contrast for image ``i`` of ``n`` alone (a per-image foil keeps that image's class)."""
    import torch

    return None if objective is None else objective.select(torch.tensor([i]), n)


def column_title(method: str, contrast: str, qualified: bool = True) -> str:
    """A figure column's title: ``gradcam · weighted``, ``gradcam · rather than Egyptian cat``."""
    from ..viz.grid import readable

    return readable(f"{method} · {contrast}" if qualified else contrast)


def npz_key(method: str, contrast: str) -> str:
    """The ``--save-maps`` array name: ``maps/gradcam/original``, ``maps/gradcam/foil:Egyptian cat``
    (printable ASCII: other characters as ``\\uXXXX`` escapes, ``/`` in a class name as ``\\x2f``)."""
    def ascii_(text: str) -> str:
        text = text.replace("\\", "\\x5c").replace("/", "\\x2f")
        return "".join(ch if 32 <= ord(ch) < 127 else ch.encode("unicode_escape").decode("ascii") for ch in text)

    return f"maps/{ascii_(method)}/{ascii_(contrast)}"


def _read(paths: list[Path], bundle: Any, skip_bad: bool) -> tuple[list[Path], Any]:
    """(the paths read, their model inputs (B, C, H, W)) for one batch: each image read and transformed at
    once (no full-size copy is kept). An unreadable or refused file is a one-line error naming it, or, with
    ``skip_bad``, a warning naming it and the file is left out."""
    import warnings

    import torch

    from ..data import load_image, sample_image
    from ..errors import ClassContrastWarning

    kept, xs = [], []
    for path in paths:
        try:
            image = sample_image("chelsea") if path == BUNDLED else load_image(path)
            xs.append(bundle.transform(image))
        except ClassContrastError as e:
            text = str(e) if str(path) in str(e) else f"{path}: {e}"
            if not skip_bad:
                raise ClassContrastError(f"{text} (--skip-bad leaves unreadable images out)") from e
            warnings.warn(f"skipped {text}", ClassContrastWarning, stacklevel=2)
            continue
        kept.append(path)
    return kept, torch.stack(xs) if xs else None


def _cat(parts: list[Any]) -> Any:
    import torch

    from ..explanation import Explanation

    first = parts[0]
    if len(parts) == 1:
        return first
    return Explanation(
        maps=torch.cat([p.maps for p in parts]), layer_maps=torch.cat([p.layer_maps for p in parts]),
        targets=torch.cat([p.targets for p in parts]), logits=torch.cat([p.logits for p in parts]),
        method=first.method, contrast=first.contrast, layer=first.layer, options=first.options,
        foils=None if first.foils is None else torch.cat([p.foils for p in parts]), objective=first.objective,
        units=None if first._units is None else [u for p in parts for u in p._units],
        scores=None if first._scores is None else torch.cat([p._scores for p in parts]),
        target_probabilities=None if first._target_probabilities is None else
        torch.cat([p._target_probabilities for p in parts]), head=first.head,
        selected=None if first.selected is None else torch.cat([p.selected for p in parts]),
    )


def _print_table(loaded: list[Any], p: Any, targets: Any, categories: list[str], selected: Any = None) -> None:
    """The explained classes of each image with their probability (for a region: the mean over its pixels;
    with --threshold only the classes above it)."""
    from rich.table import Table

    table = Table(title="Top classes")
    table.add_column("image")
    table.add_column("explained classes (probability)")
    for i, path in enumerate(loaded):
        cells = [f"{categories[int(c)]} ({float(p[i, j]):.3f})" for j, c in enumerate(targets[i])
                 if selected is None or bool(selected[i, j])]
        table.add_row(printable(path.name), printable(", ".join(cells)))
    console.print(table)


def _write_figures(pixels: list[Any], merged: dict[str, Any], categories: list[str], scale: str,
                   titles: list[str], out: Path) -> list[Path]:
    from ..viz import plot_explanations

    n = len(pixels)
    k = next(iter(merged.values())).targets.shape[1]
    per_figure = max(1, _MAX_ROWS_PER_FIGURE // k)
    if n <= per_figure:
        plot_explanations(pixels, merged, categories, scale=scale, titles=titles, path=out)  # type: ignore[arg-type]
        return [out]
    written = []
    for i in range(n):
        sub = {c: _one(e, i, n) for c, e in merged.items()}
        path = figure_name(out, i, titles[i])
        plot_explanations(pixels[i : i + 1], sub, categories, scale=scale, titles=titles[i : i + 1],  # type: ignore[arg-type]
                          path=path)
        written.append(path)
    return written
