"""A new embedded SQLite store starts as a copy of a migrated empty one: the same schema MLflow
would have made, its Default experiment in the store's own artifact root, never over a store
that exists, and MLflow's own migration when no template can be kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

from sedsweep.tracking import client_for, tracking_uri_for


def schema(db: Path) -> tuple[dict, list[tuple]]:
    """Every table and index with its DDL's lines as a set (MLflow's own migration writes a
    table's constraints in no fixed order), and the schema's alembic version."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
        ddl = {(kind, name): {line.strip(" ,") for line in (sql or "").splitlines()}
               for kind, name, sql in rows}  # fmt: skip
        return ddl, con.execute("SELECT * FROM alembic_version").fetchall()


def test_a_new_store_is_mlflows_own_schema_with_the_default_experiment_beside_it(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow_made = tmp_path / "own" / "mlflow.db"
    mlflow_made.parent.mkdir()
    MlflowClient(f"sqlite:///{mlflow_made}").search_experiments()  # MLflow migrates it
    for name in ("first", "second"):  # the first also makes the template, the second copies
        (tmp_path / name).mkdir()
        client = client_for(tracking_uri_for(tmp_path / name))
        (default,) = client.search_experiments()
        assert default.artifact_location == str(tmp_path / name / "mlartifacts" / "0")
        assert schema(tmp_path / name / "mlflow.db") == schema(mlflow_made)
    assert [p.name for p in (tmp_path / "cache" / "sedsweep").iterdir()] == [
        f"mlflow-{__import__('mlflow').__version__}-empty.db"
    ]
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == ["mlflow.db"]


def test_an_existing_store_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = tracking_uri_for(tmp_path)
    client = client_for(uri)
    kept = client.create_experiment("kept")
    assert client_for(uri).get_experiment(kept).name == "kept"


def test_without_a_cache_mlflow_migrates_the_store_itself(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    client = client_for(tracking_uri_for(tmp_path))
    assert client.create_experiment("works")
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
