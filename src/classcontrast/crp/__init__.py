"""Contrastive concept relevance (`concepts`) and its typed result (`Concepts`)."""

from .relevance import concepts
from .result import Concepts

__all__ = ["Concepts", "concepts"]
