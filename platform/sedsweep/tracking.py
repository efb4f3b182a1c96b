"""MLflow tracking: the embedded SQLite store, experiments, and a run writer over MlflowClient."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sedsweep.config import flatten

# MLflow rejects longer parameter values.
MAX_PARAM_CHARS = 6000
BATCH = 100


def tracking_uri_for(workdir: str | Path, override: str | None = None) -> str:
    """`override` when given, else the embedded SQLite store `<workdir>/mlflow.db`."""
    if override:
        return override
    return f"sqlite:///{(Path(workdir) / 'mlflow.db').resolve()}"


def client_for(uri: str):  # -> MlflowClient (imported lazily: mlflow is slow to import)
    """An MlflowClient bound to `uri` (no global state is touched)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client, name: str, artifact_root: Path | None = None) -> str:
    """The id of experiment `name`, created (with local artifact root for SQLite) if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return client.create_experiment(name, artifact_location=location)


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, string values truncated to MLflow's limit."""
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in flatten(config).items()}


class RunWriter:
    """Writes one MLflow run: params, per-epoch metrics with steps, artifacts, final status."""

    def __init__(self, client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def start(
        cls, client, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None
    ) -> RunWriter:
        """Create a new run in RUNNING state."""
        run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
        return cls(client, run.info.run_id)

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log params in batches."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one step's metrics in one call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + BATCH])

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's contents."""
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set several tags."""
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status)
