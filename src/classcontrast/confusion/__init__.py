"""The confusion audit: "why A and not B" across a whole dataset, with an interactive page."""

from .pairs import Pair, accuracy, confusion_matrix, rank_pairs
from .run import Audit, audit

__all__ = ["Audit", "Pair", "accuracy", "audit", "confusion_matrix", "rank_pairs"]
