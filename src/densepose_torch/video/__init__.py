"""DensePose on videos: people tracked from frame to frame (tracking), and temporal smoothing
of their boxes and charts (smoothing). docs/video.md describes both."""
from .smoothing import TEMPORAL_MODES, TemporalSmoother
from .tracking import Tracker, TrackerConfig

__all__ = ["TEMPORAL_MODES", "TemporalSmoother", "Tracker", "TrackerConfig"]
