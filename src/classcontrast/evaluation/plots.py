"""Charts in the study's style."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# (accuracy, p_t, y_t) colours per iteration count, as in the study's plot_figure_3
_COLOURS = [("#333333", "#878787", "#c0c0c0"), ("#ff3333", "#ffa333", "#ffe4c4"), ("#3333ff", "#6787e7", "#b0c4de")]


def _align_zero(*axes: Any) -> None:
    """Put y = 0 at the same height on twin axes (both ranges extended to include 0)."""
    lims = [(min(ax.get_ylim()[0], 0.0), max(ax.get_ylim()[1], 1e-12)) for ax in axes]
    frac = max(-lo / (hi - lo) for lo, hi in lims)  # share of the axis below zero
    for ax, (_lo, hi) in zip(axes, lims, strict=True):
        ax.set_ylim(-frac / (1 - frac) * hi if frac < 1 else -hi, hi)


def perturbation_chart(records: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Grouped bars per contrast: Δaccuracy and Δp_t (dark, right axis), Δy_t (light, left axis),
    one colour family per iteration count."""
    contrasts = list(dict.fromkeys(r["contrast"] for r in records))
    steps = sorted({r["steps"] for r in records})
    w, d = 0.07, 0.035
    fig = Figure(figsize=(7, 4))
    left = fig.subplots()
    right = left.twinx()
    for si, n in enumerate(steps):
        acc_c, p_c, y_c = _COLOURS[si % len(_COLOURS)]
        for ci, c in enumerate(contrasts):
            r = next((r for r in records if r["contrast"] == c and r["steps"] == n), None)
            if r is None:
                continue
            base = ci + (si - (len(steps) - 1) / 2) * (3 * w + d)
            right.bar(base - w, r["delta_accuracy"], w, color=acc_c, label=f"Δacc ({n} it.)" if ci == 0 else None)
            right.bar(base, r["delta_probability"], w, color=p_c, label=f"Δp_t ({n} it.)" if ci == 0 else None)
            left.bar(base + w, r["delta_logit"], w, color=y_c, label=f"Δy_t ({n} it.)" if ci == 0 else None)
    left.set_xticks(np.arange(len(contrasts)), [c.capitalize() for c in contrasts])
    left.set_ylabel("Δ y_t (light bars)")
    right.set_ylabel("Δ accuracy, Δ p_t (dark bars)")
    _align_zero(left, right)
    handles = [h for ax in (right, left) for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in (right, left) for lab in ax.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, fontsize=7, ncol=len(steps), loc="upper center", bbox_to_anchor=(0.5, 0.0))
    left.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def networks_chart(records: dict[str, list[dict[str, Any]]], path: Path, epsilon: float, steps: int) -> Path:
    """The study's multi-network figure: Δ accuracy, Δ y_t and Δ p_t (three panels) per contrast (bars) and network
    (groups) at one ε and iteration count."""
    networks = list(records)
    contrasts = list(dict.fromkeys(r["contrast"] for rs in records.values() for r in rs))
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    width = 0.8 / max(len(contrasts), 1)
    for ax, (key, label) in zip(axes, (("delta_accuracy", "Δ accuracy"), ("delta_logit", "Δ y_t"),
                                       ("delta_probability", "Δ p_t")), strict=True):
        for ci, c in enumerate(contrasts):
            values = [next((r[key] for r in records[n] if r["contrast"] == c and r["epsilon"] == epsilon
                            and r["steps"] == steps), np.nan) for n in networks]
            ax.bar(np.arange(len(networks)) + (ci - (len(contrasts) - 1) / 2) * width, values, width,
                   color=_CONTRAST_COLOURS[ci % len(_CONTRAST_COLOURS)], label=c)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(np.arange(len(networks)), [n.replace("efficientnet_", "") for n in networks], fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"ε = {epsilon:g}, {steps} iteration{'s' if steps != 1 else ''}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


_CONTRAST_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def norm_logit_chart(logits: np.ndarray, norms: np.ndarray, ids: np.ndarray, coeffs: np.ndarray, path: Path) -> Path:
    """Scatter of ‖∇_x y_t‖ against y_t coloured by image, with the quadratic fit in red."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(logits, norms, c=ids, cmap="viridis", s=4, alpha=0.6)
    xs = np.linspace(float(logits.min()), float(logits.max()), 200)
    ax.plot(xs, np.polyval(coeffs, xs), color="red", lw=2, label="quadratic fit")
    ax.set_xlabel("logit y_t")
    ax.set_ylabel("‖∇_x y_t‖₂")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def faithfulness_chart(records: list[dict[str, Any]], fractions: list[float], path: Path, title: str = "") -> Path:
    """Deletion (left) and insertion (right) curves, mean ± standard error over images, one line per
    method × contrast (colour: contrast, line style: method; the random map dashed grey)."""
    contrasts = list(dict.fromkeys(r["contrast"] for r in records))
    methods = [m for m in dict.fromkeys(r["method"] for r in records) if m != "random"]
    colours = dict(zip(contrasts, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"], strict=False))
    styles = dict(zip(methods, ["-", "--", ":", "-."], strict=False))
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    x = np.asarray(fractions)
    # the random map is the same under every contrast: one line, except on the contrast's own objective
    per_contrast = bool(records) and records[0]["score"] == "contrast"
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        drawn = set()
        for r in records:
            mean_curve = np.asarray(r[f"{kind}_curve"])
            se = np.nan_to_num(np.asarray(r[f"{kind}_curve_se"], dtype=float))
            if r["method"] == "random":
                key = r["contrast"] if per_contrast else ""
                if key in drawn:
                    continue
                drawn.add(key)
                label = ("random map" + (f" · {key}" if key else "")) if kind == "deletion" else None
                ax.plot(x, mean_curve, color=colours.get(key, "0.5") if key else "0.5", ls=(0, (1, 1)), lw=1.2,
                        alpha=0.8, label=label)
                continue
            label = f"{r['method']} · {r['contrast']}" if kind == "deletion" else None
            ax.plot(x, mean_curve, color=colours.get(r["contrast"], "k"), ls=styles.get(r["method"], "-"), lw=1.4,
                    label=label)
            ax.fill_between(x, mean_curve - se, mean_curve + se, color=colours.get(r["contrast"], "k"), alpha=0.12)
        ax.set_xlabel("fraction of pixels " + ("removed, most relevant first" if kind == "deletion"
                                               else "put back, most relevant first"))
        ax.set_title(kind)
        ax.grid(alpha=0.3)
    names = {"probability": "p_t", "logit": "y_t", "contrast": "the contrast's objective O"}
    axes[0].set_ylabel(names.get(records[0]["score"], records[0]["score"]) if records else "")
    fig.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
