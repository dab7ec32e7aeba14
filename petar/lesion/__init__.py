"""Lesions: measurement (SUVmax/peak/mean, MTV, TLG, diameters) and seeded segmentation from a click."""
from .click import ClickSegmentation, click_segment, segment_click
from .measure import LesionMeasurement, measure, measurement_document
from .threshold import ThresholdFailure, iterative_threshold, jentzen_threshold

__all__ = ["ClickSegmentation", "LesionMeasurement", "ThresholdFailure", "click_segment", "iterative_threshold",
           "jentzen_threshold", "measure", "measurement_document", "segment_click"]
