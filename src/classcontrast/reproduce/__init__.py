"""Reproducing the whole study from one configuration file."""

from .config import Config, Experiment, load_config
from .run import run_suite

__all__ = ["Config", "Experiment", "load_config", "run_suite"]
