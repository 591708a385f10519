"""harness: measure real transformer training steps, count their FLOPs, work out utilization."""

__version__ = "0.1.0"
