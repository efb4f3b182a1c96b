"""The method contract shared by every paper's implementation (no Ray, no MLflow here).

A method is built from a validated config (a pydantic model whose defaults are the paper's
values) and a FeatureSet. The generic epoch loop (`sedsweep.loop`) drives it: `train_epoch()`
then `evaluate(split)` for each split, with `state_dict()` / `load_state_dict()` for
checkpoints and optional `artifacts(dir)` for figures. The pieces every method shares live
here (splits, z-scored inputs, batched prediction, figure saving) and in
`sedsweep.methods.evaluation` (the metric sets); `tests/test_method_contract.py` checks the
contract for every registered method.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from sedsweep.config import SEED_MAX, Strict
from sedsweep.data.splits import SplitConfig, Splits, resolve_splits
from sedsweep.errors import UserError
from sedsweep.features import FeatureSet
from sedsweep.fsio import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class MethodConfig(Strict):
    """Fields every method has; each method extends it with its paper's settings."""

    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    split_seed: int | None = Field(
        default=None, ge=0, le=SEED_MAX,
        description="seed of a random validation split (None: seed)",
    )  # fmt: skip
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=8, ge=1)
    amp: bool = Field(default=False, description="bf16 autocast")
    split: SplitConfig = Field(default_factory=SplitConfig)

    @property
    def splitting_seed(self) -> int:
        """The seed of the random validation split: `split_seed`, else `seed`."""
        return self.seed if self.split_seed is None else self.split_seed


@dataclass(frozen=True)
class Scale:
    """A named size: config overrides, synthetic-corpus options and feature overrides."""

    config: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if name and name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the device when enabled; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) so a config and seed reproduce a run."""
    torch.manual_seed(seed)


def zscored_clips(fs: FeatureSet, train: np.ndarray) -> np.ndarray:
    """Every clip z-scored per mel bin with the statistics of the `train` clips only.

    [n_clips, longest clip, n_mels] float32; shorter clips are zero-padded at the end.
    """
    mean, std = fs.norm_stats(train)
    if fs.fixed_length is not None:  # one float32 copy of the features, normalised in place
        x = fs.stacked(np.arange(len(fs))).astype(np.float32, copy=False)
        x -= mean
        x /= std
        return x
    x = np.zeros((len(fs), int(fs.lengths.max()), fs.n_mels), dtype=np.float32)
    for i, n in enumerate(fs.lengths):
        x[i, :n] = (fs.clip(i) - mean) / std
    return x


# Above this many bytes of z-scored float32 clips, a trial on the CPU whose features are
# memory-mapped gathers each batch from the map instead of holding its own copy
# (SEDSWEEP_RESIDENT_MAX_MB overrides it; measured in tests/benchmarks/bench_paper_scale.py).
RESIDENT_MAX_BYTES = 256 << 20


def resident_max_bytes() -> int:
    """`RESIDENT_MAX_BYTES`, or $SEDSWEEP_RESIDENT_MAX_MB MiB when that is set."""
    raw = os.environ.get("SEDSWEEP_RESIDENT_MAX_MB")
    if raw is None:
        return RESIDENT_MAX_BYTES
    try:
        return int(float(raw) * (1 << 20))
    except ValueError:
        raise UserError(f"not a number: {raw!r}", where="SEDSWEEP_RESIDENT_MAX_MB") from None


class ClipInputs:
    """The clips a method trains on, z-scored with the training split's statistics.

    Resident: one [n_clips, longest, n_mels] float32 tensor on the device (`zscored_clips`),
    built at the first `take`; on a GPU, or when the features are in memory or small.
    Gathered: each batch is read from the features' memory map and z-scored when asked for, so
    a trial holds only its batch and the pages it touches (a paper-scale corpus on CPU
    workers). Both give the same numbers: the same float32 operations on the same values.
    """

    def __init__(self, fs: FeatureSet, train: np.ndarray, device: torch.device) -> None:
        self.fs, self.train, self.device = fs, train, device
        self.frames = int(fs.lengths.max())
        size = len(fs) * self.frames * fs.n_mels * 4
        self.resident = device.type != "cpu" or not fs.mapped or size <= resident_max_bytes()
        self.tensor: torch.Tensor | None = None
        self.stats: tuple[np.ndarray, np.ndarray] | None = None

    def _prepare(self) -> None:
        """Normalise on first use: building a method only to check a corpus (the sweep
        driver's `check_method`) reads no features."""
        if self.resident and self.tensor is None:
            self.tensor = torch.from_numpy(zscored_clips(self.fs, self.train)).to(self.device)
        elif not self.resident and self.stats is None:
            self.stats = self.fs.norm_stats(self.train)

    def take(
        self, idx: np.ndarray, frames: int | None = None, starts: np.ndarray | None = None
    ) -> torch.Tensor:
        """Clips `idx` as [len(idx), frames, n_mels] on the device: each from its frame
        `starts[k]` (0 when None) for `frames` frames (default: the longest clip), zero-padded
        past a clip's end."""
        self._prepare()
        frames = self.frames if frames is None else frames
        first = np.zeros(len(idx), dtype=np.int64) if starts is None else np.asarray(starts)
        if self.tensor is not None:
            it = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.device)
            if starts is None:
                return self.tensor[it, :frames]
            cols = torch.from_numpy(first[:, None] + np.arange(frames)).to(self.device)
            return self.tensor[it[:, None], cols]
        assert self.stats is not None
        mean, std = self.stats
        out = np.zeros((len(idx), frames, self.fs.n_mels), dtype=np.float32)
        for k, i in enumerate(idx):
            clip = self.fs.clip(int(i))[first[k] : first[k] + frames]
            out[k, : len(clip)] = (clip - mean) / std
        return torch.from_numpy(out).to(self.device)


@dataclass
class Predictions:
    """Per-clip outputs of a batched prediction (in the order of the clips asked for) and the
    clip-weighted mean of each batch loss."""

    outputs: dict[str, list[Any]]
    losses: dict[str, float]

    def stacked(self, key: str) -> np.ndarray:
        """One output stacked over the clips (needs equal shapes)."""
        return np.stack(self.outputs[key])


BatchStep = Callable[[np.ndarray], tuple[Mapping[str, Sequence[Any]], Mapping[str, Any]]]
"""One evaluation batch: clip indices → (per-clip outputs by name, mean losses by name)."""


def save_figure(fig: Figure, path: Path, dpi: int = 80) -> Path:
    """Write a matplotlib figure as a PNG atomically; return its path."""
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    return path


class Method(abc.ABC):
    """One paper's training and evaluation, epoch by epoch."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]]
    feature_preset: ClassVar[str]
    synthetic_kind: ClassVar[str]
    scales: ClassVar[dict[str, Scale]]
    eval_batch: ClassVar[int] = 32  # clips per forward pass when evaluating

    def __init__(self, config: MethodConfig, features: FeatureSet, device: torch.device) -> None:
        """Seed torch, make the method's numpy rng (config.seed) and resolve its splits."""
        self.config = config
        self.features = features
        self.device = device
        self.epoch = 0
        self.selected_val: dict[str, float] = {}  # val metrics at selection_epoch() (the loop's)
        seed_everything(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.splits = resolve_splits(features.folds, config.split, config.splitting_seed)
        self.check_data(config, self.splits, features.verified)

    @classmethod
    def check_data(cls, config: MethodConfig, splits: Splits, verified: np.ndarray) -> None:
        """Refuse (ValueError) a corpus this config cannot train on, from its splits and the
        clips' verified flags alone: checked from the manifest when a sweep or run is planned,
        before any feature is extracted, and again when the method is built. None by default."""
        del config, splits, verified  # nothing every method needs beyond a training split

    def zscored_inputs(self) -> ClipInputs:
        """All clips z-scored with training-split statistics (`ClipInputs`)."""
        return ClipInputs(self.features, self.splits.train, self.device)

    @torch.no_grad()
    def predict_batches(self, idx: np.ndarray, step: BatchStep) -> Predictions:
        """Run `step` over `idx` in batches of `eval_batch` clips and gather its outputs.

        Put the networks in eval mode first; `step` runs without gradients.
        """
        outputs: dict[str, list[Any]] = {}
        totals: dict[str, float] = {}
        for start in range(0, len(idx), self.eval_batch):
            batch = idx[start : start + self.eval_batch]
            out, losses = step(batch)
            for key, values in out.items():
                outputs.setdefault(key, []).extend(values)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(batch)
        return Predictions(outputs, {k: v / len(idx) for k, v in totals.items()})

    @abc.abstractmethod
    def train_epoch(self) -> dict[str, float]:
        """Train for one epoch and advance `self.epoch` by one; return metrics (at least 'loss')."""

    @abc.abstractmethod
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on 'train', 'val' or 'test'."""

    @classmethod
    @abc.abstractmethod
    def metric_names(cls) -> set[str]:
        """Every name `evaluate` can report (a split reports those defined on it): what a
        search-space file may name as an objective, table metric or claim."""

    def selection_epoch(self) -> int:
        """The epoch whose weights `network()` is and `evaluate("test")` scores: the last one,
        unless the method selects on validation (0: none selected yet)."""
        return self.epoch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as a detached deep copy: the epoch, the batch-order rng,
        the selected epoch's validation metrics and the method's own state (models,
        optimisers, schedulers, ...)."""
        return copy.deepcopy(
            {
                "epoch": self.epoch,
                "rng": self.rng.bit_generator.state,
                "selected_val": self.selected_val,
                **self.own_state(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything `state_dict()` saved; the next epoch then replays exactly."""
        self.epoch = int(state["epoch"])
        self.selected_val = {k: float(v) for k, v in state.get("selected_val", {}).items()}
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.load_own_state(copy.deepcopy(state))

    @abc.abstractmethod
    def own_state(self) -> dict[str, Any]:
        """The method's part of the checkpoint (live references; `state_dict` copies them)."""

    @abc.abstractmethod
    def load_own_state(self, state: dict[str, Any]) -> None:
        """Restore the method's part from a (private copy of a) `state_dict()`."""

    @abc.abstractmethod
    def network(self) -> torch.nn.Module:
        """The trained network(s) a user deploys (what the model registry stores)."""

    def artifacts(self, out_dir: Path) -> list[Path]:
        """Write figures or files for humans into `out_dir`; return their paths."""
        return []

    def references(self) -> dict[str, float]:
        """What a model that learned nothing scores, keyed like the loop's metrics: each
        training loss the gate reads (`train/loss`) → its value when every output predicts
        the training label prior (BCE: the prior's entropy), each validation metric
        (`val/ap_micro`) → its chance level (`evaluation.chance_levels`). The loop logs them
        once per run under `chance/`; `sedsweep.validity` judges a trial against them.
        Empty: the trial is not judged."""
        return {}


def render_artifacts(method: Method, out_dir: Path) -> list[Path]:
    """`method.artifacts(out_dir)` with every label drawn as plain text (a class named
    `cost $\\frac{$` is not mathtext) and any failure only logged: a figure problem never
    fails the run or trial that trained the weights."""
    import logging

    import matplotlib

    try:
        with matplotlib.rc_context({"text.parse_math": False}):
            return method.artifacts(out_dir)
    except Exception as exc:  # figures are for humans; the weights and metrics stand
        logging.getLogger(__name__).warning(
            "%s: no figures (%s: %s)", method.name, type(exc).__name__, str(exc)[:300]
        )
        return []


def logit(p: np.ndarray | float, eps: float = 1e-6) -> torch.Tensor:
    """log(p / (1 − p)) of probabilities clipped to [eps, 1 − eps], as a float32 tensor."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return torch.as_tensor(np.log(q / (1 - q)), dtype=torch.float32)


def batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled minibatches of `indices` (the last one may be smaller)."""
    order = rng.permutation(indices)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
