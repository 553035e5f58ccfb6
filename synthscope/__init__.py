"""synthscope: synthetic images for responsible-AI work (generators, detectors, audits, reports)."""

__version__ = "0.1.0"
