"""A load generator, not a paper: the `null` method trains nothing.

Each epoch sleeps `sleep_s` seconds and reports metrics that follow a known, deterministic
learning curve of its config and seed, so a search has something to optimise and the sweep
machinery (Ray Tune, Optuna, schedulers, MLflow tracking) can be driven at scale without
burning CPU on models: the tracking benchmark and the tracking chaos tests use it.

The landscape: a final score
    s* = 0.55 + 0.3·exp(−(log10(optim.lr) + 3)² / 2) + 0.1·quality + bonus(choice)
(best at lr = 1e-3, quality = 1, choice = b), reached along s(e) = s*·(1 − exp(−e/τ)); each
split's score adds Gaussian noise of std `noise` drawn from (seed, epoch, split), and its
loss is 1 − score.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from sedsweep.config import Strict
from sedsweep.features import FeatureSet
from sedsweep.methods.base import Method, MethodConfig, Scale, save_figure

BONUS = {"a": 0.0, "b": 0.04, "c": -0.04}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class NullOptim(Strict):
    """Named like the real methods' optimiser settings, so search spaces read the same."""

    lr: float = Field(default=1e-3, gt=0, description="log10(lr) = -3 scores best")


class NullConfig(MethodConfig):
    """The load generator's knobs: its cost per epoch and the shape of its learning curve."""

    sleep_s: float = Field(default=0.0, ge=0, le=3600, description="seconds slept per epoch")
    optim: NullOptim = Field(default_factory=NullOptim)
    quality: float = Field(default=0.5, ge=0, le=1, description="adds 0.1·quality")
    choice: Literal["a", "b", "c"] = Field(default="a", description="b +0.04, c −0.04")
    tau: float = Field(default=3.0, gt=0, description="epochs to 63 % of the final score")
    noise: float = Field(default=0.01, ge=0, le=1, description="std of each split's noise")


class Null(Method):
    """Sleeps, then reports the known learning curve of its config (see the module text)."""

    name = "null"
    Config = NullConfig
    config: NullConfig
    feature_preset = "morfi2018"
    synthetic_kind = "lowres"
    scales: ClassVar[dict[str, Scale]] = {  # the data is never read: the tiny corpus for all
        "tiny": Scale(config={"epochs": 5}, corpus={"scale": "tiny"}),
        "small": Scale(config={"epochs": 20}, corpus={"scale": "tiny"}),
        "paper": Scale(config={"epochs": 100}, corpus={"scale": "tiny"}),
    }

    def __init__(self, config: NullConfig, features: FeatureSet, device: torch.device) -> None:
        super().__init__(config, features, device)
        self.net = torch.nn.Linear(1, 1, bias=False)  # holds the current training score
        with torch.no_grad():
            self.net.weight.zero_()

    def final_score(self) -> float:
        """s*: the score this config converges to."""
        c = self.config
        peak = math.exp(-((math.log10(c.optim.lr) + 3.0) ** 2) / 2.0)
        return 0.55 + 0.3 * peak + 0.1 * c.quality + BONUS[c.choice]

    def score(self, split: str, epoch: int) -> float:
        """The split's score after `epoch` epochs: the curve plus its deterministic noise."""
        curve = self.final_score() * (1.0 - math.exp(-epoch / self.config.tau))
        rng = np.random.default_rng([self.config.seed, epoch, SPLIT_CODES[split]])
        return float(np.clip(curve + self.config.noise * rng.standard_normal(), 0.0, 1.0))

    def train_epoch(self) -> dict[str, float]:
        if self.config.sleep_s:
            time.sleep(self.config.sleep_s)
        self.epoch += 1
        score = self.score("train", self.epoch)
        with torch.no_grad():
            self.net.weight.fill_(score)
        return {"loss": 1.0 - score}

    def evaluate(self, split: str) -> dict[str, float]:
        if len(self.splits[split]) == 0:
            return {}
        score = self.score(split, self.epoch)
        return {"loss": 1.0 - score, "score": score}

    @classmethod
    def metric_names(cls) -> set[str]:
        """The loss and the score."""
        return {"loss", "score"}

    def own_state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict()}

    def load_own_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])

    def network(self) -> torch.nn.Module:
        return self.net

    def artifacts(self, out_dir: Path) -> list[Path]:
        """The validation learning curve so far (recomputed: it is a function of the config)."""
        from matplotlib.figure import Figure

        epochs = np.arange(1, max(self.epoch, 1) + 1)
        fig = Figure(figsize=(5, 3), layout="constrained")
        ax = fig.subplots()
        ax.plot(epochs, [self.score("val", int(e)) for e in epochs], marker="o")
        ax.set(xlabel="epoch", ylabel="val score", ylim=(0, 1))
        return [save_figure(fig, out_dir / "learning_curve.png")]
