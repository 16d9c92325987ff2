"""What an explanation explains — its units: whole images (a classifier), regions of a segmentation, detected
objects. One protocol (`classcontrast.units.base.Units`), one class per kind; the engine asks the units."""

from __future__ import annotations

from .base import UNITS, Units, claim, from_output, register_units
from .images import ImageUnits
from .objects import ObjectUnits
from .regions import AllRegions, Region, RegionUnits, dense_logits, is_region_spec
from .yolo import InstanceMasks, YoloUnits

__all__ = ["UNITS", "AllRegions", "ImageUnits", "InstanceMasks", "ObjectUnits", "Region", "RegionUnits", "Units",
           "YoloUnits", "claim", "dense_logits", "from_output", "is_region_spec", "register_units"]
