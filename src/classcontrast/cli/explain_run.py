"""The work of ``classcontrast explain``, from one request: its checks before any work, the model, the contrasts and
the targets, every batch explained (with progress), then the table, the notes and the outputs. The command
(`classcontrast.cli.explain_cmd`) only parses its options into an `ExplainRequest`. Torch is imported on use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError
from ..text import printable
from . import manifest
from .checks import FIGURE_SUFFIXES, check_number, check_out_file, check_outputs, output_path
from .common import RunProgress, console, resolve_device
from .explain_concepts import CONCEPT_METHODS, concept_paths, write_concepts
from .explain_inputs import BUNDLED, read_batch

TASKS = ("classification", "segmentation", "detection")


@dataclass
class ExplainRequest:
    """Everything ``explain`` was asked, as parsed from its options (lists already split)."""

    images: list[Path]
    model: str = manifest.DEFAULT_MODEL
    weights: str = "DEFAULT"
    num_classes: int | None = None
    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    contrasts: list[str] = field(default_factory=list)  # empty: the default for the model's head
    top_k: int | None = None  # None: the library's default number (targets.DEFAULT_TOP)
    targets: list[str] = field(default_factory=list)
    threshold: float | None = None
    classes: list[str] = field(default_factory=list)
    template: str = "a photo of a {}."
    prompt: str | None = None
    answers: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    detections: int | None = None
    min_score: float | None = None
    task: str | None = None
    foil: str | None = None
    contrast_cam: str | None = None
    layer: str | None = None
    head: str | None = None
    relu: bool = False
    scale: str = "map"
    out: Path = Path("why.png")
    save_maps: Path | None = None
    video: Path | None = None
    html: Path | None = None
    concepts: int | None = None  # --concepts N: a figure of each target's N top concepts beside the maps'
    concept_method: str = "lrp"
    batch_size: int = 16
    device: str = "auto"
    skip_bad: bool = False
    quiet: bool = False
    family_options: dict[str, Any] = field(default_factory=dict)  # a model family's own (trust_remote_code, ...)
    reading: dict[str, Any] = field(default_factory=dict)  # frames, repeat, backend, max_pixels, max_voxels
    method_options: dict[str, Any] = field(default_factory=dict)  # the methods' own, as given (None: not given)


@dataclass
class _Plan:
    """What the checks before any work settled: the files, the methods' options, the output files."""

    files: list[Path]
    inputs: list[Path]  # the files given (not the bundled photo): no output may replace one
    options: dict[str, Any]
    nifti: bool


@dataclass
class _Done:
    """What explaining every batch gave: per (method, contrast) the results of each batch, and the inputs read."""

    columns: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    loaded: list[Path] = field(default_factory=list)  # the inputs explained (without those --skip-bad left out)
    positions: list[int] = field(default_factory=list)  # their places among the files (their outputs' names)
    inputs: list[Any] = field(default_factory=list)  # each batch's model inputs
    pixels: list[Any] = field(default_factory=list)  # each input as drawn
    affines: list[Any] = field(default_factory=list)
    sizes: list[Any] = field(default_factory=list)
    unit: Any = None  # the record class of the units explained
    groups: list[Any] = field(default_factory=list)  # --html: what the page offers, explained with the figure's maps


def run_explain(r: ExplainRequest) -> None:
    """Explain every input of ``r`` and write what it asks (see the module docstring)."""
    plan = _plan(r)

    dev = resolve_device(r.device)
    bundle = _load(r, dev)
    contrasts = _contrasts(r, bundle, plan)
    spec = _targets(r, bundle)
    if bundle.one_size_per_image:
        r.batch_size = 1
    done = _explain_all(r, bundle, contrasts, spec, plan, dev)
    if bundle.undoes_preprocessing:  # each explanation on the user's image
        done.columns = {key: [bundle.on_user_image(ex, *size) for ex, size in zip(exs, done.sizes, strict=True)]
                        for key, exs in done.columns.items()}
        done.pixels = [bundle.pixels_on_user_image(p, *size) for p, size in zip(done.pixels, done.sizes, strict=True)]
    _write(r, bundle, contrasts, plan, done)


def _plan(r: ExplainRequest) -> _Plan:
    """The checks before the model loads: numbers, names, the methods' options and every output file."""
    from ..data.inputs import list_inputs
    from ..data.volume import is_volume
    from .method_flags import method_flags

    if r.scale not in {"map", "row", "column", "figure"}:
        raise ClassContrastError(f"unknown --scale {r.scale!r}; choose map, row, column or figure")
    for value, option, low in ((r.top_k, "--top-k", 1), (r.batch_size, "--batch-size", 1),
                               (r.num_classes, "--num-classes", 1), (r.detections, "--detections", 1),
                               (r.concepts, "--concepts", 1)):
        check_number(value, option, minimum=low)
    for value, option in ((r.min_score, "--min-score"), (r.threshold, "--threshold")):
        check_number(value, option, minimum=0, maximum=1)
    for name in ("frames", "max_pixels", "max_voxels"):
        check_number(r.reading.get(name), "--" + {"max_pixels": "max-clip-pixels"}.get(name, name.replace("_", "-")),
                     minimum=1)
    if r.head not in (None, "softmax", "sigmoid"):
        raise ClassContrastError(f"unknown --head {r.head!r}; choose softmax or sigmoid")
    if r.concept_method not in CONCEPT_METHODS:
        raise ClassContrastError(f"unknown --concept-method {r.concept_method!r}; choose {', '.join(CONCEPT_METHODS)}")
    if r.task not in (None, *TASKS):
        raise ClassContrastError(f"unknown --task {r.task!r}; choose {', '.join(TASKS)}")
    if r.answers and r.prompt is None:
        raise ClassContrastError("--answers needs --prompt (the question they answer)")
    if r.prompt is not None and r.classes:
        raise ClassContrastError("give --prompt (a vision-language model's answers) or --classes (zero-shot)")
    options = {"layer": r.layer, "relu": r.relu or None, **method_flags(r.methods, r.method_options)}
    files = list_inputs(r.images) if r.images else [BUNDLED]  # read batch by batch: no full-size image is kept
    plan = _Plan(files, files if r.images else [], options, r.save_maps is not None and is_volume(r.save_maps))
    _check_outputs(r, plan)
    return plan


def _check_outputs(r: ExplainRequest, plan: _Plan) -> None:
    """Every output file a run may write, before any work: never an input, never twice, never readable inside an
    input folder (the NIfTI maps, named by the contrasts' keys, are checked once the model is known)."""
    names, inputs, given = [f.name for f in plan.files], plan.inputs, r.images or []
    check_out_file(r.out, "--out", inputs, FIGURE_SUFFIXES)
    concepts = concept_paths(r.out, list(range(len(names))), names, len(names)) if r.concepts else []
    check_outputs(dict.fromkeys([r.out, *(output_path(r.out, i, n, len(names)) for i, n in enumerate(names)),
                                 *concepts]), "--out", inputs, given)
    check_out_file(r.save_maps, "--save-maps", inputs, {".gz", ".nii"} if plan.nifti else {".npz"})
    check_out_file(r.html, "--html", inputs, {".html", ".htm"})
    check_out_file(r.video, "--video", inputs, {".mp4", ".mov", ".mkv", ".webm"})
    if r.video is not None:
        check_outputs([output_path(r.video, i, n, len(names)) for i, n in enumerate(names)], "--video", inputs, given)


def _load(r: ExplainRequest, dev: Any) -> Any:
    """The model: a vision-language model's answers (--prompt), a zero-shot model's classes (--classes), or any
    registered family's model."""
    trust = bool(r.family_options.get("trust_remote_code"))
    if r.prompt is not None:
        from ..models.answers import load_answers

        bundle = load_answers(r.model, r.prompt, r.answers or None, trust).to(dev)
        console.print(f"question: {printable(r.prompt)}")
        return bundle
    if r.classes:
        from ..models.zero_shot import load_zero_shot

        return load_zero_shot(r.model, r.classes, r.template, trust).to(dev)
    from ..models import load_model

    return load_model(r.model, weights=r.weights, num_classes=r.num_classes, device=dev, **r.family_options)


def _contrasts(r: ExplainRequest, bundle: Any, plan: _Plan) -> list[Any]:
    """The contrasts: those asked (or the default for the model's head: original and weighted, original and max
    under a sigmoid head, where weighted is original), a --foil and a --contrast-cam; and the NIfTI maps' files,
    now that their keys are known."""
    from ..classes import class_index
    from ..contrasts import Foil, get_contrast
    from ..engine import _unique_names, model_head, unwrap_model
    from .explain_out import nifti_paths

    default = ["original", "max" if model_head(bundle, unwrap_model(bundle), r.head) == "sigmoid" else "weighted"]
    contrasts = [get_contrast(c) for c in r.contrasts or default]  # (no warning for a default)
    if r.foil is not None:
        contrasts.append(Foil(class_index(r.foil, bundle.categories, "--foil")))
    if r.contrast_cam is not None:
        from ..peer_contrasts import ContrastCAM

        contrasts.append(ContrastCAM(class_index(r.contrast_cam, bundle.categories, "--contrast-cam")))
    if plan.nifti:
        assert r.save_maps is not None
        keys = [(m, k) for m in r.methods for k in _unique_names([c.key(bundle.categories) for c in contrasts])]
        check_outputs([p for paths in nifti_paths(r.save_maps, keys, [f.name for f in plan.files]) for p in paths],
                      "--save-maps", plan.inputs, r.images or [])
    return contrasts


def _targets(r: ExplainRequest, bundle: Any) -> Any:
    """What each input's units are: classes (--target, --threshold, --top-k), regions (--region, --task
    segmentation) or detected objects (--detections, --min-score, --task detection)."""
    from ..classes import class_index
    from ..targets import DEFAULT_TOP, Threshold
    from ..units.selectors import Detections, Region

    targets = [class_index(t, bundle.categories, "--target") for t in r.targets] or None
    regions: Any = [Region(class_index(c, bundle.categories, "--region")) for c in r.regions] or None
    if sum(v is not None for v in (targets, regions, r.threshold, r.detections)) > 1:
        raise ClassContrastError("give one of --target, --threshold (classifiers), --region (segmentation models) and "
                                 "--detections (detectors)")
    if r.task == "classification" and regions is not None:
        raise ClassContrastError("--region needs a segmentation model, not --task classification")
    if targets is None and r.top_k is not None and r.top_k > bundle.num_classes:
        raise ClassContrastError(f"--top-k {r.top_k} exceeds the model's {bundle.num_classes} classes")
    if r.detections is not None or r.task == "detection" or r.min_score is not None:  # a detector's options
        top = r.detections or r.top_k or (DEFAULT_TOP if r.min_score is None else None)  # --min-score: all above it
        return Detections(top=top, threshold=r.min_score)
    if regions is not None or r.task == "segmentation":
        return regions or Region.all(r.top_k or DEFAULT_TOP)
    if r.threshold is not None:
        return Threshold(r.threshold, 1)  # K grows to the most any batch has (see _same_k)
    if targets is None and r.top_k is not None:
        return _Top(r.top_k)  # the model's kind decides what its top k are: read on the first batch
    return targets  # None: the library's default, the same for every kind of model


@dataclass(frozen=True)
class _Top:
    """``--top-k k`` before the model's kind is known (`classcontrast.units.base.top_units` on the first batch)."""

    k: int


def _explain_all(r: ExplainRequest, bundle: Any, contrasts: list[Any], spec: Any, plan: _Plan, dev: Any) -> _Done:
    """Every batch read, explained by every method (progress shown at a terminal), checked against what was asked
    (a named region every image has, the --task the model's output is)."""
    from ..engine import explain, unwrap_model
    from ..explorer.offers import offered_groups
    from ..methods import options_for
    from ..targets import Threshold
    from ..units import top_units
    from ..viz.overlay import viewable

    done, files = _Done(), plan.files
    with RunProgress(r.methods, -(-len(files) // r.batch_size), r.quiet) as progress:
        def explain_batch(x: Any, spec: Any) -> list[tuple[tuple[str, str], Any]]:
            found = []
            for m in r.methods:
                with progress.method(m):
                    found += [((m, k), e) for k, e in explain(bundle, x, m, contrasts, spec, head=r.head,
                                                              **options_for(m, plan.options)).items()]
            return found

        page = _page_request(r, bundle, contrasts, plan, progress.method) if r.html is not None else None

        def explain_and_offer(x: Any, spec: Any, names: list[str]) -> list[tuple[tuple[str, str], Any]]:
            """The batch's maps; with --html, what the page offers too, from the same calls when they agree."""
            if page is None:
                return explain_batch(x, spec)
            groups = offered_groups(bundle, x, page, spec, names, len(x), first=len(done.loaded) - len(names))
            done.groups += groups
            return _asked(groups, r.methods, contrasts, bundle) if all(g.asked is not None for g in groups) \
                else explain_batch(x, spec)

        for start in range(0, len(files), r.batch_size):
            chunk, x, scans, shapes = read_batch(files[start : start + r.batch_size], bundle, r.skip_bad, r.reading)
            if not chunk:
                continue
            places = iter(range(start, start + r.batch_size))
            done.positions.extend(next(i for i in places if files[i] == path) for path in chunk)
            done.loaded, done.affines, done.sizes = done.loaded + chunk, done.affines + scans, done.sizes + shapes
            x = x.to(dev)
            if isinstance(spec, _Top):
                spec = top_units(unwrap_model(bundle), x, spec.k)
            batch_spec = [spec] * len(chunk) if isinstance(spec, list) and not _regions(spec) else spec
            for key, ex in explain_and_offer(x, batch_spec, [p.name for p in chunk]):
                done.columns.setdefault(key, []).append(ex)
            _check_batch(r, bundle, next(iter(done.columns.values()))[-1], chunk, done)
            done.inputs.append(x)
            done.pixels.extend(viewable(p) for p in bundle.normalize.inverse(x).cpu())  # a scan's values windowed
        if not done.loaded:
            raise ClassContrastError("none of the images could be read (each one is named above)")
        if isinstance(spec, Threshold):  # the same K in every batch: a batch with fewer classes above it, again
            _same_k(done, r.threshold, explain_batch)
    return done


def _regions(spec: list[Any]) -> bool:
    from ..units.selectors import is_region_spec

    return is_region_spec(spec)


def _check_batch(r: ExplainRequest, bundle: Any, first: Any, chunk: list[Path], done: _Done) -> None:
    """One batch's units against the request: a region asked for by name that an image does not have, a --task
    that is not the model's (one line, before any file)."""
    done.unit = type(first.units[0][0])  # the kind the model's output was read as
    if r.regions:
        for i, image_units in enumerate(first.units):
            empty = next((u for u in image_units if u.empty), None)
            if empty is not None:
                raise ClassContrastError(f"--region {bundle.categories[empty.target]}: {printable(chunk[i].name)} "
                                         "has no pixel of that class")
    if r.task is not None and r.task != done.unit.task:
        raise ClassContrastError(f"--task {r.task}: this model's output is a {done.unit.task} model's")


def _same_k(done: _Done, threshold: float | None, explain_batch: Any) -> None:
    """--threshold: every batch was explained with the classes at or above the threshold (at least one per
    image, fillers marked), from the explanation's own forward pass; a batch with fewer than the most any
    batch has is explained again with that many, so that all batches stack. None anywhere is an error,
    before any file is written."""
    from ..targets import Threshold

    results = next(iter(done.columns.values()))
    if not any(bool(ex.selected.any()) for ex in results):
        highest = max(float(ex.probabilities.max()) for ex in results)
        raise ClassContrastError(f"--threshold {threshold}: no class reaches it in any image (the highest "
                                 f"probability is {highest:.3g})")
    k = max(ex.targets.shape[1] for ex in results)
    for i, ex in enumerate(results):
        if ex.targets.shape[1] < k:
            for key, again in explain_batch(done.inputs[i], Threshold(threshold, k)):
                done.columns[key][i] = again


def _write(r: ExplainRequest, bundle: Any, contrasts: list[Any], plan: _Plan, done: _Done) -> None:
    """The table and the notes, then every output asked for: figures, arrays, videos, the page."""
    import torch

    from .explain_out import print_notes, print_table, save_arrays, save_clip_video, save_nifti, split, write_figures

    batches = next(iter(done.columns.values()))
    selected = [ex.selected for ex in batches]
    print_table(done.loaded, torch.cat([ex.target_probabilities.cpu() for ex in batches]),
                torch.cat([ex.targets.cpu() for ex in batches]), bundle.categories,
                None if selected[0] is None else torch.cat(selected).cpu(),
                done.unit.measure("voxels" if done.affines[0] is not None else "pixels"))
    images = split(done.columns)
    names = [p.name for p in done.loaded]
    print_notes(images, names, bundle.categories)
    qualified = len(r.methods) > 1 or len(contrasts) > 1
    paths = [r.out if len(done.loaded) == 1 else output_path(r.out, at, name, len(plan.files))
             for at, name in zip(done.positions, names, strict=True)]  # one figure per input, when several
    if r.prompt is not None:  # the question's figure: answers, image maps and the prompt's words
        from .explain_out import write_answer_figures

        written = write_answer_figures(bundle, done.inputs, images, done.pixels, names, contrasts, r.prompt, paths,
                                       qualified)
    else:
        written = write_figures(images, done.pixels, names, [a is not None for a in done.affines], bundle.categories,
                                r.scale, r.out, paths, qualified)
    for w in written:
        console.print(f"wrote {w}")
    if r.save_maps is not None and plan.nifti:
        save_nifti(r.save_maps, images, done.affines, names, done.positions, len(plan.files))
    elif r.save_maps is not None:
        save_arrays(r.save_maps, images, done.loaded, bundle.name)
    if r.video is not None:
        if done.pixels[0].ndim != 4 or done.affines[0] is not None:
            raise ClassContrastError("--video is for clips (a video model's input); these inputs are not clips")
        for i, (image, clip) in enumerate(zip(images, done.pixels, strict=True)):
            save_clip_video(output_path(r.video, done.positions[i], names[i], len(plan.files)), image, clip)
    shown: list[Path] = []
    if r.concepts:
        shown = write_concepts(bundle, contrasts, done.columns, done.inputs, done.pixels, names,
                               concept_paths(r.out, done.positions, names, len(plan.files)), top=r.concepts,
                               method=r.concept_method, layer=r.layer)
        for w in shown:
            console.print(f"wrote {w}")
    if r.html is not None:
        _page(r, bundle, done, [(f"concepts: {n}", w) for n, w in zip(names, shown, strict=False)])


def _page_request(r: ExplainRequest, bundle: Any, contrasts: list[Any], plan: _Plan, each: Any) -> Any:
    """What the page offers besides the figure: every named contrast (the peers' when asked), the --foil first."""
    from ..contrasts import Foil
    from ..explorer.offers import PageRequest
    from ..explorer.page import NAMED, PEERS

    named = (*NAMED, *(c.name for c in contrasts if c.name in PEERS))
    foils = tuple(int(c.foil) for c in contrasts if isinstance(c, Foil))
    return PageRequest(tuple(r.methods), named, foils, tuple(contrasts), r.head, plan.options, each)


def _asked(groups: list[Any], methods: list[str], contrasts: list[Any], bundle: Any) -> list[tuple[tuple[str, str],
                                                                                                  Any]]:
    """The figure's results, taken from the page's calls (which explained the same units under these contrasts and
    the page's own): per method and asked contrast, the batch's inputs joined."""
    from ..engine import _unique_names
    from ..explanation import Explanation

    keys = _unique_names([c.key(bundle.categories) for c in contrasts])
    return [((m, k), Explanation.cat([g.results[m][k].columns(g.asked) for g in groups])) for m in methods
            for k in keys]


def _page(r: ExplainRequest, bundle: Any, done: _Done, figures: list[tuple[str, Path]]) -> None:
    """The explorer page of the run's inputs, drawn from what was explained with the figure: the units the figure
    explained, every contrast a click away; below it ``figures`` (the concepts', embedded)."""
    import base64

    from ..explorer.compute import rendered
    from ..explorer.page import write_page

    assert r.html is not None
    data = rendered(bundle, done.groups, r.methods)
    if figures:
        data = {**data, "figures": [{"title": title, "src": "data:image/png;base64," +
                                     base64.b64encode(path.read_bytes()).decode()} for title, path in figures]}
    page = write_page(data, r.html)
    console.print(f"wrote {page}")


__all__ = ["ExplainRequest", "run_explain"]
