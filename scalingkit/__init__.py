"""scalingkit: scaling-law sweeps into a labelled cube, and honest fits on it."""
__version__ = "0.1.0"
