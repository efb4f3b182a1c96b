"""Sweeps: search-space files, the Optuna searcher, the Ray Tune trainable and runner."""
