"""What an explanation explains — its units: whole images (a classifier), regions of a segmentation, detected
objects. One protocol (`classcontrast.units.base.Units`), one class per kind; the engine asks the units."""

from __future__ import annotations

from .base import UNITS, Selection, Units, claim, from_output, kind_of, register_units, top_units
from .images import ImageUnits
from .objects import ObjectUnits
from .regions import AllRegions, Region, RegionUnits, dense_logits, is_region_spec
from .yolo import InstanceMasks, YoloUnits

__all__ = ["UNITS", "AllRegions", "ImageUnits", "InstanceMasks", "ObjectUnits", "Region", "RegionUnits", "Selection",
           "Units", "YoloUnits", "claim", "dense_logits", "from_output", "is_region_spec", "kind_of", "register_units",
           "top_units"]
