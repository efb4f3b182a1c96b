"""Driver-side MLflow tracking of a sweep: one parent run, one child run per Tune trial.

Only the driver talks to MLflow (one writer: the embedded SQLite store is safe, and workers
need no MLflow access). Child runs carry the tag `sweep.trial_id`, so a resumed sweep finds
and continues them instead of creating duplicates.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from ray import tune

from sedsweep.sweep.spec import data_part, trial_config
from sedsweep.sweep.trainable import NODE_KEY
from sedsweep.tracking import (
    EPOCHS_RUN_TAG,
    ERROR_ARTIFACT,
    ERROR_TAG,
    FIGURES_DIR,
    MAX_TAG_CHARS,
    NODE_TAG,
    OPTUNA_NUMBER_TAG,
    PARENT_TAG,
    STOPPED_EARLY_TAG,
    TRIAL_TAG,
    RunWriter,
    client_for,
    flat_params,
)

METRIC_PREFIXES = ("train/", "val/", "test/", "epoch")


class MlflowSweepCallback(tune.Callback):
    """Creates/continues child runs and logs params, per-epoch metrics, status and artifacts."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        *,
        method: str,
        base_config: dict[str, Any],
        epochs: int,
        tags: dict[str, str],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.method = method
        self.base_config = base_config
        self.epochs = epochs
        self.tags = tags
        self.children: dict[str, RunWriter] = {}
        self.node_tagged: set[str] = set()
        self.logged: dict[str, int] = {}  # last epoch logged per trial
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment: keep the URI, not the live client."""
        fresh = {"_client": None, "children": {}, "node_tagged": set(), "logged": {}}
        return {**self.__dict__, **fresh}

    @property
    def client(self) -> Any:
        """The MlflowClient, created on first use (also after unpickling on resume)."""
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def child(self, trial: Any) -> RunWriter:
        """The trial's run: cached, else found by its trial-id tag (resume), else created."""
        if trial.trial_id in self.children:
            return self.children[trial.trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' "
                f"and tags.`{PARENT_TAG}` = '{self.parent_run_id}'"
            ),
        )
        if found:  # a resumed sweep: continue the run, never re-log epochs it already has
            writer = RunWriter(self.client, found[0].info.run_id)
            self.client.update_run(writer.run_id, status="RUNNING")
            history = self.client.get_metric_history(writer.run_id, "epoch")
            self.logged[trial.trial_id] = max((m.step for m in history), default=0)
        else:
            overrides = trial.config["overrides"]
            writer = RunWriter.start(
                self.client,
                self.experiment_id,
                run_name=f"{trial.trial_id}-{trial.config['optuna_trial']}",
                tags={
                    **self.tags,
                    PARENT_TAG: self.parent_run_id,
                    TRIAL_TAG: trial.trial_id,
                    OPTUNA_NUMBER_TAG: str(trial.config["optuna_trial"]),
                },
            )
            full = trial_config(self.base_config, overrides, self.epochs)
            writer.log_params(flat_params({"method": self.method, **full, **data_part(overrides)}))
        self.children[trial.trial_id] = writer
        return writer

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Open (or re-open) the trial's child run."""
        self.child(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log the epoch's metrics with step = epoch."""
        metrics = {
            k: v
            for k, v in result.items()
            if k.startswith(METRIC_PREFIXES) and isinstance(v, int | float)
        }
        writer = self.child(trial)
        step = int(result["training_iteration"])
        if step <= self.logged.get(trial.trial_id, 0):
            return
        writer.log_metrics(metrics, step=step)
        self.logged[trial.trial_id] = step
        if result.get(NODE_KEY) and trial.trial_id not in self.node_tagged:
            writer.set_tags({NODE_TAG: str(result[NODE_KEY])})
            self.node_tagged.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """FINISHED after the full budget, KILLED (tag sweep.stopped_early) when ASHA stopped it."""
        writer = self.child(trial)
        done = int(trial.last_result.get("training_iteration", 0))
        if done >= self.epochs:
            checkpoint = trial.checkpoint
            if checkpoint is not None:
                figures = Path(checkpoint.path) / FIGURES_DIR
                writer.log_artifacts(figures, FIGURES_DIR)
            writer.finish("FINISHED")
        else:
            writer.set_tags({STOPPED_EARLY_TAG: "true", EPOCHS_RUN_TAG: str(done)})
            writer.finish("KILLED")
        self.children.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """FAILED, with the error's last line as a tag and the full traceback as an artifact."""
        writer = self.child(trial)
        text = _error_text(trial)
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        writer.set_tags({ERROR_TAG: last[:MAX_TAG_CHARS]})
        writer.client.log_text(writer.run_id, text, ERROR_ARTIFACT)
        writer.finish("FAILED")
        self.children.pop(trial.trial_id, None)


def _error_text(trial: Any) -> str:
    """The trial's error with traceback (Tune's error file), or the pickled exception."""
    path = trial.error_file
    if path and Path(path).exists():
        return Path(path).read_text(errors="replace")
    error = trial.get_pickled_error()
    if error is None:
        return "trial failed without an error record"
    return "".join(traceback.format_exception(error))
