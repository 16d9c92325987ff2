"""``classcontrast explain``: signed, class-contrastive maps for images, clips and volumes, as figures, arrays,
the explorer page and (a clip) an overlay video.

The command only declares its options and parses them into an `ExplainRequest` for `run_explain`; the methods'
own options and the model families' are flags made from their registrations (`classcontrast.cli.manifest`).
No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import manifest
from .method_flags import with_family_options, with_method_options
from .options import CONTRASTS_HELP, METHODS_HELP, check_names, method_names, split_values

MODELS_HELP = " | ".join(str(f["spec"]) for f in manifest.FAMILIES) + " (classcontrast models: what each is)"
VIDEO_BACKEND = typer.Option(None, help="torchcodec | pyav (default: torchcodec where it decodes, else PyAV)")
MAX_CLIP_PIXELS = typer.Option(None, help="Clips: the most frames x height x width read from one (default 134,217,728)")
MAX_VOXELS = typer.Option(None, help="Volumes: the most voxels one may have (default 134,217,728)")
CONCEPTS = typer.Option(None, "--concepts", help="Also draw, beside each input's figure, the N concepts (channels of "
                        "--layer) most relevant to each map's target and contrast")
CONCEPT_METHOD = typer.Option("lrp", help="--concepts: lrp (relevance through zennit's rules) | gradcam (each "
                              "channel's weighted activation)")


def _explain(
    images: list[Path] = typer.Argument(None, help="Image files or folders, video clips (.mp4, ... with a video "
                                        "model), NIfTI volumes (.nii.gz). None: the bundled cat photo."),
    model: str = typer.Option(manifest.DEFAULT_MODEL, help=MODELS_HELP),
    weights: str = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path"),
    num_classes: int = typer.Option(None, help="Class count of a checkpoint with a new head"),
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    contrast: list[str] = typer.Option(None, "--contrast", "--contrasts",
                                       help=f"{CONTRASTS_HELP} (default: original weighted; original max under a "
                                       "sigmoid head, where weighted is original)"),
    top_k: int | None = typer.Option(None, "--top-k", help="Explain the k first units of the model's kind "
                                     "(most probable classes, largest regions, best objects; default 1)"),
    target: list[str] = typer.Option(None, help="Explain these classes (index or name) instead of --top-k"),
    threshold: float = typer.Option(None, help="Explain every class with probability >= THRESHOLD instead of "
                                    "--top-k (a multi-label model's labels: use with --head sigmoid)"),
    classes: list[str] = typer.Option(None, "--classes", help="Zero-shot (a CLIP-style model): the class names, "
                                      "put into --template as the prompts"),
    template: str = typer.Option("a photo of a {}.", help="Zero-shot: the prompt, {} marking the class name"),
    prompt: str = typer.Option(None, help="A vision-language model (a folder): the question; its candidate "
                               "answers (--answers) are the classes"),
    answers: list[str] = typer.Option(None, "--answers", help="With --prompt: the candidate answers (each scored "
                                      "by its summed token log-probability); none: the next token's vocabulary"),
    region: list[str] = typer.Option(None, help="Segmentation models: explain the pixels of these classes "
                                     "(index or name); default: the --top-k largest predicted regions"),
    detections: int = typer.Option(None, help="Detectors: explain the N best detected objects (scoring at least "
                                   "--min-score)"),
    min_score: float | None = typer.Option(None, help="Detectors: the score a detection needs to be explained "
                                           "(default: the detector's own usual one)"),
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
    concepts: int = CONCEPTS, concept_method: str = CONCEPT_METHOD,
    batch_size: int = typer.Option(16, help="Images per forward pass"),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out images that cannot be read (each one named "
                                  "in a warning) instead of stopping at the first"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and warnings (no progress, no "
                               "table, no notes)"),
    frames: int = typer.Option(None, help="Clips: the frames read from each, evenly spaced (default: the model's "
                               "clip length)"),
    repeat_frames: bool = typer.Option(False, "--repeat-frames", help="Clips shorter than --frames: repeat frames "
                                       "evenly (otherwise such a clip is refused)"),
    video_backend: str = VIDEO_BACKEND, max_clip_pixels: int = MAX_CLIP_PIXELS, max_voxels: int = MAX_VOXELS,
    **options: Any,
) -> None:
    """Explain why the model picks each class over the others, for every image."""
    from .common import console

    methods = method_names(method)  # a misspelling is reported before torch loads
    check_names(contrasts=split_values(contrast))
    console.quiet = quiet  # (every command line starts loud: run_cli)
    from .explain_run import ExplainRequest, run_explain

    family = {k: options.pop(k) for k in list(options) if k in manifest.FAMILY_OPTIONS}
    run_explain(ExplainRequest(
        images=list(images or []), model=model, weights=weights, num_classes=num_classes,
        methods=methods, contrasts=split_values(contrast), top_k=top_k, targets=split_values(target),
        threshold=threshold, classes=split_values(classes), template=template, prompt=prompt,
        answers=split_values(answers), regions=split_values(region), detections=detections, min_score=min_score,
        task=task, foil=foil, contrast_cam=contrast_cam, layer=layer, head=head, relu=relu, scale=scale, out=out,
        save_maps=save_maps, video=video, html=html, concepts=concepts, concept_method=concept_method,
        batch_size=batch_size, device=device, skip_bad=skip_bad, quiet=quiet, family_options=family,
        method_options=options,
        reading={"frames": frames, "repeat": repeat_frames, "backend": video_backend, "max_pixels": max_clip_pixels,
                 "max_voxels": max_voxels}))


explain_command = with_family_options(with_method_options(_explain, exclude=("layer", "relu")))

__all__ = ["explain_command"]
