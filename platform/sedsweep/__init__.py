"""sedsweep: hyperparameter sweeps for weakly-labelled sound event detection and audio tagging."""

__version__ = "0.1.0"
