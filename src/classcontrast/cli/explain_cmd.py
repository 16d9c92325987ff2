"""``classcontrast explain``: signed, class-contrastive maps for images, clips and volumes, as figures, arrays,
the explorer page and (a clip) an overlay video.

Only the option declarations live at module level (no torch): the work imports what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ClassContrastError
from ..text import printable
from . import method_flags as flags
from .checks import FIGURE_SUFFIXES, check_number, check_out_file, check_outputs, output_path
from .common import RunProgress, console, resolve_device
from .evaluate_cmd import TRUST, check_common
from .explain_out import (
    column_title,
    nifti_paths,
    npz_key,
    on_image,
    print_notes,
    save_arrays,
    save_clip_video,
    save_nifti,
    split,
    write_figures,
)
from .options import CONTRASTS_HELP, METHODS_HELP, check_names, split_values

BUNDLED = Path("chelsea (bundled cat photo)")  # no image given: the bundled photo


def explain_command(
    images: list[Path] = typer.Argument(None, help="Image files or folders, video clips (.mp4, ... with a video "
                                        "model), NIfTI volumes (.nii.gz). None: the bundled cat photo."),
    model: str = typer.Option("efficientnet_lite0",
                              help="efficientnet_lite0 (or _lite1, _lite2: embedded) | torchvision:<arch> | "
                              "timm:<arch> | hf:<hub id or folder> | "
                              "monai:<network> | yolo:<yaml or .pt>"),
    weights: str = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path"),
    num_classes: int = typer.Option(None, help="Class count of a checkpoint with a new head"),
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    contrast: list[str] = typer.Option(None, "--contrast", "--contrasts",
                                       help=f"{CONTRASTS_HELP} (default: original weighted; original max under a "
                                       "sigmoid head, where weighted is original)"),
    top_k: int = typer.Option(2, "--top-k", help="Explain the k most probable classes"),
    target: list[str] = typer.Option(None, help="Explain these classes (index or name) instead of --top-k"),
    threshold: float = typer.Option(None, help="Explain every class with probability >= THRESHOLD instead of "
                                    "--top-k (a multi-label model's labels: use with --head sigmoid)"),
    classes: list[str] = typer.Option(None, "--classes", help="Zero-shot (CLIP-style hf: model): the class names, "
                                      "put into --template as the prompts"),
    template: str = typer.Option("a photo of a {}.", help="Zero-shot: the prompt, {} marking the class name"),
    prompt: str = typer.Option(None, help="A vision-language model (hf: folder): the question; its candidate "
                               "answers (--answers) are the classes"),
    answers: list[str] = typer.Option(None, "--answers", help="With --prompt: the candidate answers (each scored "
                                      "by its summed token log-probability); none: the next token's vocabulary"),
    region: list[str] = typer.Option(None, help="Segmentation models: explain the pixels of these classes "
                                     "(index or name); default: the --top-k largest predicted regions"),
    detections: int = typer.Option(None, help="Detectors: explain the N best detected objects (scoring at least "
                                   "--min-score)"),
    min_score: float | None = typer.Option(None, help="Detectors: the score a detection needs to be explained "
                                           "(default: 0.5; Ultralytics YOLO 0.25, its predictor's)"),
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
    save_maps: Path = typer.Option(None, help="Also write maps, targets and probabilities (.npz); for NIfTI volumes "
                                   "a .nii.gz: the maps aligned with the scan"),
    video: Path = typer.Option(None, "--video", help="Clips: also write the overlay as a video (.mp4): the clip and "
                               "each map of its first target, frame by frame"),
    html: Path = typer.Option(None, help="Also write the interactive explorer: one self-contained HTML file"),
    batch_size: int = typer.Option(16, help="Images per forward pass"),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N"),
    trust_remote_code: bool = TRUST,
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="yolo:PATH.pt: load an Ultralytics "
                                          "checkpoint (a pickled model: loading it can run code from the file)"),
    imgsz: int = typer.Option(None, help="yolo: models: the size images are letterboxed to (default: a checkpoint's "
                              "own training size, as Ultralytics' predictor uses, else 640)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out images that cannot be read (each one named "
                                  "in a warning) instead of stopping at the first"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and warnings (no progress, no "
                               "table, no notes)"),
    frames: int = typer.Option(None, help="Clips: the frames read from each, evenly spaced (default: the model's "
                               "clip length)"),
    repeat_frames: bool = typer.Option(False, "--repeat-frames", help="Clips shorter than --frames: repeat frames "
                                       "evenly (otherwise such a clip is refused)"),
    video_backend: str = typer.Option(None, help="torchcodec | pyav (default: torchcodec where it decodes, else "
                                      "PyAV)"),
    max_clip_pixels: int = typer.Option(None, help="Clips: the most frames x height x width read from one "
                                        "(default 134,217,728)"),
    max_voxels: int = typer.Option(None, help="Volumes: the most voxels one may have (default 134,217,728)"),
    steps: int = flags.STEPS, baseline: str = flags.BASELINE, integration: str = flags.INTEGRATION,
    samples: int = flags.SAMPLES, sigma: float = flags.SIGMA,
    seed: int = typer.Option(None, help="smoothgrad, kernel_shap, rise: random seed (0)"),
    squared: bool = flags.SQUARED,
    internal_batch_size: int = flags.INTERNAL_BATCH_SIZE, composite: str = flags.COMPOSITE,
    canonizer: str = flags.CANONIZER,
    keep_channels: bool = typer.Option(None, "--keep-channels",
                                       help="input-space methods: per-channel maps in --save-maps (drawn: their sum)"),
    discard_ratio: float = flags.DISCARD_RATIO, abs_: bool = flags.ABS,
    window: str = flags.WINDOW, stride: str = flags.STRIDE, segments: int = flags.SEGMENTS, cells: int = flags.CELLS,
    keep: float = flags.KEEP, ablation: float = flags.ABLATION,
) -> None:
    """Explain why the model picks each class over the others, for every image."""
    check_names(split_values(method), split_values(contrast))  # a misspelling is reported before torch loads
    console.quiet = quiet  # (every command line starts loud: run_cli)
    import torch

    from ..classes import class_index
    from ..contrasts import Foil, get_contrast
    from ..data.inputs import list_inputs
    from ..data.volume import is_volume
    from ..engine import explain, model_head, unwrap_model
    from ..methods import options_for
    from ..models import load_model
    from ..targets import Threshold, TopK
    from ..units import Region
    from ..units.selectors import Detections
    from ..viz.overlay import viewable

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
    given = flags.method_flags(methods, steps=steps, baseline=baseline, integration=integration, samples=samples,
                         sigma=sigma, seed=seed, squared=squared, internal_batch_size=internal_batch_size,
                         composite=composite, canonizer=canonizer, keep_channels=keep_channels,
                         discard_ratio=discard_ratio, abs=abs_,
                         **flags.perturbation_flags(window, stride, segments, cells, keep, ablation))
    opts = {"layer": layer, "relu": relu or None, **given}  # each method takes the ones it has
    if head not in (None, "softmax", "sigmoid"):
        raise ClassContrastError(f"unknown --head {head!r}; choose softmax or sigmoid")
    files = list_inputs(images) if images else [BUNDLED]  # read batch by batch: no full-size image is kept
    inputs = files if images else []
    check_out_file(out, "--out", inputs, FIGURE_SUFFIXES)  # before any work: never overwrite an input
    names = [f.name for f in files]
    check_outputs(dict.fromkeys([out, *(output_path(out, i, n, len(names)) for i, n in enumerate(names))]), "--out",
                  inputs, images or [])
    nifti = save_maps is not None and is_volume(save_maps)
    check_out_file(save_maps, "--save-maps", inputs, {".gz", ".nii"} if nifti else {".npz"})
    check_out_file(html, "--html", inputs, {".html", ".htm"})
    check_out_file(video, "--video", inputs, {".mp4", ".mov", ".mkv", ".webm"})
    if video is not None:
        check_outputs([output_path(video, i, n, len(names)) for i, n in enumerate(names)], "--video", inputs,
                      images or [])
    if answers and prompt is None:
        raise ClassContrastError("--answers needs --prompt (the question they answer)")
    if prompt is not None:
        if classes:
            raise ClassContrastError("give --prompt (a vision-language model's answers) or --classes (zero-shot)")
        from ..models.answers import load_answers

        bundle = load_answers(model, prompt, split_values(answers) if answers else None, trust_remote_code).to(dev)
        console.print(f"question: {printable(prompt)}")
    elif classes:
        from ..models.zero_shot import load_zero_shot

        bundle = load_zero_shot(model, split_values(classes), template, trust_remote_code).to(dev)
    else:
        bundle = load_model(model, weights=weights, num_classes=num_classes, device=dev,
                            trust_remote_code=trust_remote_code, trust_checkpoint=trust_checkpoint, imgsz=imgsz)
    default = ["original", "max" if model_head(bundle, unwrap_model(bundle), head) == "sigmoid" else "weighted"]
    contrasts = [get_contrast(c) for c in split_values(contrast) or default]  # (no warning for a default)
    if foil is not None:
        contrasts.append(Foil(class_index(foil, bundle.categories, "--foil")))
    if contrast_cam is not None:
        from ..peer_contrasts import ContrastCAM

        contrasts.append(ContrastCAM(class_index(contrast_cam, bundle.categories, "--contrast-cam")))
    if nifti:  # every map's file known before any work: none an input, none twice, none inside an input folder
        keys = [(m, k) for m in methods for k in _unique_keys(contrasts, bundle.categories)]
        check_outputs([p for paths in nifti_paths(save_maps, keys, names) for p in paths], "--save-maps", inputs,
                      images or [])
    wanted = split_values(target) if target else []
    targets = [class_index(t, bundle.categories, "--target") for t in wanted] or None
    regions = [Region(class_index(r, bundle.categories, "--region")) for r in split_values(region)] if region else None
    if sum(v is not None for v in (targets, regions, threshold, detections)) > 1:
        raise ClassContrastError("give one of --target, --threshold (classifiers), --region (segmentation models) and "
                                 "--detections (detectors)")
    if task not in (None, "classification", "segmentation", "detection"):
        raise ClassContrastError(f"unknown --task {task!r}; choose classification, segmentation or detection")
    if min_score is not None:
        check_number(min_score, "--min-score", minimum=0, maximum=1)
    if detections is not None:
        check_number(detections, "--detections", minimum=1)
    asked_objects = detections is not None or task == "detection" or min_score is not None  # (a detector's options)
    objects = Detections(top=detections or top_k, threshold=min_score) if asked_objects else None
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

    for value, option in ((frames, "--frames"), (max_clip_pixels, "--max-clip-pixels"), (max_voxels, "--max-voxels")):
        check_number(value, option, minimum=1)
    reading = {"frames": frames, "repeat": repeat_frames, "backend": video_backend,
               "max_pixels": max_clip_pixels, "max_voxels": max_voxels}
    columns: dict[tuple[str, str], list[Any]] = {}
    inputs, pixels, affines, sizes = [], [], [], []

    def explain_batch(x: Any, spec: Any) -> list[tuple[tuple[str, str], Any]]:
        found = []
        for meth in methods:
            with progress.method(meth):
                found += [((meth, name), ex) for name, ex in
                          explain(bundle, x, meth, contrasts, spec, head=head, **options_for(meth, opts)).items()]
        return found

    loaded: list[Path] = []  # the inputs explained, in order (without the unreadable ones --skip-bad skipped)
    positions: list[int] = []  # their places among the inputs given (what their output files are named by)
    with RunProgress(methods, -(-len(files) // batch_size), quiet) as progress:
        for start in range(0, len(files), batch_size):
            chunk, x, scans, shapes = _read(files[start : start + batch_size], bundle, skip_bad, reading)
            if not chunk:
                continue
            places = iter(range(start, start + batch_size))
            positions.extend(next(i for i in places if files[i] == path) for path in chunk)
            loaded.extend(chunk)
            affines.extend(scans)
            sizes.extend(shapes)
            x = x.to(dev)
            spec = regions or objects or (threshold_spec if threshold is not None else
                                          TopK(top_k) if targets is None else [targets] * len(chunk))
            for key, ex in explain_batch(x, spec):
                columns.setdefault(key, []).append(ex)
            first = next(iter(columns.values()))[-1]
            unit = type(first.units[0][0])  # the kind the model's output was read as
            if region:  # a region asked for by name that an image does not have: one line, before any file
                for i, image_units in enumerate(first.units):
                    empty = next((u for u in image_units if u.empty), None)
                    if empty is not None:
                        raise ClassContrastError(f"--region {bundle.categories[empty.target]}: "
                                                 f"{printable(chunk[i].name)} has no pixel of that class")
            if task is not None and task != unit.task:
                raise ClassContrastError(f"--task {task}: this model's output is a {unit.task} model's")
            inputs.append(x)
            pixels.extend(viewable(p) for p in bundle.normalize.inverse(x).cpu())  # a scan's values windowed
        if not loaded:
            raise ClassContrastError("none of the images could be read (each one is named above)")
        if threshold is not None:  # the same K in every batch: a batch with fewer classes above it, explained again
            threshold_spec = _same_k(columns, inputs, threshold, explain_batch)
    if hasattr(bundle.preprocess, "undo"):  # a letterboxed input (YOLO): maps, boxes and masks on the user's image
        columns = {key: [on_image(ex, bundle.preprocess, size) for ex, size in zip(exs, sizes, strict=True)]
                   for key, exs in columns.items()}
        pixels = [bundle.preprocess.undo(p, *size) for p, size in zip(pixels, sizes, strict=True)]
    batches = next(iter(columns.values()))
    t = torch.cat([ex.targets.cpu() for ex in batches])
    selected = [ex.selected for ex in batches]
    _print_table(loaded, torch.cat([ex.target_probabilities.cpu() for ex in batches]), t, bundle.categories,
                 None if selected[0] is None else torch.cat(selected).cpu(),
                 unit.measure("voxels" if affines[0] is not None else "pixels"))
    images_ = split(columns)
    names = [p.name for p in loaded]  # (the explained ones: --skip-bad may have left some out)
    print_notes(images_, names, bundle.categories)
    qualified = len(methods) > 1 or len(contrasts) > 1
    paths = [out if len(loaded) == 1 else output_path(out, at, name, len(files))
             for at, name in zip(positions, names, strict=True)]  # one figure per input, when the run writes those
    if prompt is not None:  # the question's figure: answers, image maps and the prompt's words
        from .explain_out import write_answer_figures

        written = write_answer_figures(bundle, inputs, images_, pixels, names, contrasts, prompt, paths, qualified)
    else:
        written = write_figures(images_, pixels, names, [a is not None for a in affines], bundle.categories, scale,
                                out, paths, qualified)
    for w in written:
        console.print(f"wrote {w}")
    if save_maps is not None:
        if nifti:
            save_nifti(save_maps, images_, affines, names, positions, len(files))
        else:
            save_arrays(save_maps, images_, loaded, bundle.name)
    if video is not None:
        if pixels[0].ndim != 4 or affines[0] is not None:
            raise ClassContrastError("--video is for clips (a video model's input); these inputs are not clips")
        for i, (image, clip) in enumerate(zip(images_, pixels, strict=True)):
            save_clip_video(output_path(video, positions[i], names[i], len(files)), image, clip)
    if html is not None:
        from ..explorer.compute import write_explorer
        from ..explorer.page import NAMED, PEERS

        named = (*NAMED, *(c.name for c in contrasts if c.name in PEERS))  # the peers' buttons when asked for
        units = regions or objects or unit.asking(top_k)  # the page shows the units the figure explained
        sizes = {tuple(p.shape[-2:]) for p in pixels}
        page = write_explorer(html, bundle, torch.cat(inputs) if len(sizes) == 1 else inputs, methods,
                              units if units is not None else threshold_spec if threshold is not None else t.to(dev),
                              names, batch_size=batch_size, named=named, head=head,
                              foils=[int(c.foil) for c in contrasts if isinstance(c, Foil)], **opts)
        console.print(f"wrote {page}")


def _unique_keys(contrasts: list[Any], categories: list[str]) -> list[str]:
    """The result keys `explain` gives these contrasts (``weighted``, ``foil:Egyptian cat``...)."""
    from ..engine import _unique_names

    return _unique_names([c.key(categories) for c in contrasts])


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


def _read(paths: list[Path], bundle: Any, skip_bad: bool, reading: dict[str, Any]
          ) -> tuple[list[Path], Any, list[Any], list[Any]]:
    """(the paths read, their model inputs (B, C, *S), each NIfTI volume's affine or None, each image's own
    (height, width) or None) for one batch: each input read and transformed at once (no full-size copy is kept) —
    an image (as the model's own tools read it: `ModelBundle.read_image`), a clip (``--frames`` or the model's
    clip length, spread over it) or a NIfTI volume, within the readers' budgets (`classcontrast.data.budgets`). An
    unreadable or refused file, or one the model does not take (a clip for an image model), is a one-line error
    naming it, or, with ``skip_bad``, a warning naming it and the file is left out."""
    import warnings

    import torch

    from ..errors import ClassContrastWarning

    kept, xs, affines, sizes = [], [], [], []
    for path in paths:
        try:
            data, affine = _input(path, bundle, reading)
            xs.append(bundle.transform(data))
        except ClassContrastError as e:
            text = str(e) if str(path) in str(e) else f"{path}: {e}"
            if not skip_bad:
                raise ClassContrastError(f"{text}{SKIP_HINT if _readable_hint(e) else ''}") from e
            warnings.warn(f"skipped {text}", ClassContrastWarning, stacklevel=2)
            continue
        kept.append(path)
        affines.append(affine)
        sizes.append((data.height, data.width) if hasattr(data, "height") else None)
    if len({x.shape for x in xs}) > 1:
        shapes = ", ".join(sorted({str(tuple(x.shape)) for x in xs}))
        raise ClassContrastError(f"inputs of different shapes in one batch ({shapes}): give one kind at a time, "
                                 "or --batch-size 1")
    return kept, torch.stack(xs) if xs else None, affines, sizes


SKIP_HINT = " (--skip-bad leaves unreadable inputs out)"


def _readable_hint(e: ClassContrastError) -> bool:
    """Whether the --skip-bad hint helps: a file that could not be read, not a budget, a backend or a model's
    kind (which every other input of the run would meet too)."""
    text = str(e)
    return not any(word in text for word in ("budget", "backend", "may have", "may hold", "--video-backend",
                                             "takes images", "takes clips", "takes volumes", "multiple of",
                                             "fewer than the"))


def _input(path: Path, bundle: Any, reading: dict[str, Any]) -> tuple[Any, Any]:
    """(one input's data for ``bundle.transform``, its NIfTI affine or None), refusing a kind the model does not
    take before reading it."""
    from ..data import sample_image
    from ..data.budgets import CLIP_PIXELS, VOLUME_VOXELS
    from ..data.video import VIDEO_SUFFIXES, load_video
    from ..data.volume import is_volume, load_volume

    if path == BUNDLED:
        return sample_image("chelsea"), None
    takes = "clips" if bundle.frames is not None else "volumes" if bundle.normalize.spatial == 3 else "images"
    kind = "volumes" if is_volume(path) else "clips" if path.suffix.lower() in VIDEO_SUFFIXES else "images"
    if kind != takes:
        models = {"clips": "a video classifier (--model torchvision:r3d_18)", "volumes": "a 3-D model "
                  "(--model monai:<network>)", "images": "an image model"}
        one = {"clips": "a video clip", "volumes": "a 3-D volume", "images": "an image"}[kind]
        raise ClassContrastError(f"{path} is {one}, but the model {bundle.name} takes {takes}: explain {kind} with "
                                 f"{models[kind]}")
    if kind == "volumes":
        return load_volume(path, reading.get("max_voxels") or VOLUME_VOXELS)
    if kind == "clips":
        return load_video(path, frames=reading.get("frames") or bundle.frames, backend=reading.get("backend"),
                          repeat=bool(reading.get("repeat")), max_pixels=reading.get("max_pixels") or CLIP_PIXELS), None
    return bundle.read_image(path), None


def _print_table(loaded: list[Any], p: Any, targets: Any, categories: list[str], selected: Any = None,
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


__all__ = ["column_title", "explain_command", "npz_key"]  # the figure titles and array names, for scripts
