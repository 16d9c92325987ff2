"""Fine-tuning (the study's recipe)."""

from .recipe import Recipe, replace_head, study_test_transform, study_train_transform, train

__all__ = ["Recipe", "replace_head", "study_test_transform", "study_train_transform", "train"]
