"""The paper's experiments as reusable functions (built on [`explain`][classcontrast.engine.explain])."""

from ..baselines import baseline
from .faithfulness import run_faithfulness, write_faithfulness
from .masking import keep_masks, markdown_table, masking_rows, relative_probability, run_masking
from .normlogit import rank_selection, run_norm_logit, write_norm_logit
from .perturbation import clamp_box, measure, perturb, run_perturbation, summarize, write_perturbation
from .runner import Batch, SampleLog, batches, write_table

__all__ = [
    "Batch",
    "SampleLog",
    "baseline",
    "batches",
    "clamp_box",
    "keep_masks",
    "markdown_table",
    "masking_rows",
    "measure",
    "perturb",
    "rank_selection",
    "relative_probability",
    "run_faithfulness",
    "run_masking",
    "run_norm_logit",
    "run_perturbation",
    "summarize",
    "write_faithfulness",
    "write_norm_logit",
    "write_perturbation",
    "write_table",
]
