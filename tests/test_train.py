"""`sedsweep train` end to end at tiny scale, tracked in a real SQLite MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from sedsweep.cli import main
from sedsweep.tracking import tracking_uri_for


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny whenwho run (2 epochs) in a fresh work directory."""
    workdir = tmp_path_factory.mktemp("train")
    args = ["train", "--method", "whenwho", "--scale", "tiny", "--workdir", str(workdir)]
    assert main([*args, "--set", "mode=tied", "--experiment", "t"]) == 0
    client = MlflowClient(tracking_uri_for(workdir))
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    return workdir, client, runs


def test_run_has_params_per_epoch_metrics_and_artifacts(trained):
    _, client, runs = trained
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["mode"] == "tied"
    assert run.data.params["mmm.w_max"] == str(1 / 3)
    assert run.data.params["features.n_mels"] == "40"
    assert run.data.tags["sedsweep.method"] == "whenwho"
    history = client.get_metric_history(run.info.run_id, "val/when_frame_auc")
    assert [m.step for m in history] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    for key in ("test/who_lwlrap", "test/who_auc_macro", "test/when_segment_f1"):
        assert key in run.data.metrics
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint.pt", "run.yaml", "figures"} <= names
    figures = client.list_artifacts(run.info.run_id, "figures")
    assert figures and all(f.path.endswith(".png") for f in figures)


def test_run_yaml_reproduces_the_run(trained, capsys):
    workdir, client, runs = trained
    first = runs[0]
    spec = workdir / "runs" / first.info.run_id / "run.yaml"
    assert (
        main(["train", "--config", str(spec), "--workdir", str(workdir), "--experiment", "t"]) == 0
    )
    exp = client.get_experiment_by_name("t")
    again = [
        r for r in client.search_runs([exp.experiment_id]) if r.info.run_id != first.info.run_id
    ]
    assert len(again) == 1
    for key, value in first.data.metrics.items():
        if key.startswith(("val/", "test/", "train/loss")):
            assert again[0].data.metrics[key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "mmm.w_mx=1"], "unknown key 'mmm.w_mx' (did you mean 'mmm.w_max'? known"),
        (["--set", "mmm.w_max=-1"], "key 'mmm.w_max'"),
        (["--set", "mode=sideways"], "key 'mode'"),
        (["--scale", "huge"], "--scale: unknown scale 'huge' (known: tiny, small, paper)"),
        (["--scale", "smal"], "--scale: unknown scale 'smal' (did you mean 'small'?"),
        (["--set", "features.n_melz=3"], "unknown feature field 'n_melz' (did you mean 'n_mels'?"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(tmp_path, capsys, extra, needle):
    workdir = tmp_path / "w"
    args = ["train", "--method", "whenwho", "--scale", "tiny", "--workdir", str(workdir), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not workdir.exists()


def test_bad_config_file_and_method(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: whenwho\nconfig:\n  mode: [unclosed\n")
    assert main(["train", "--config", str(bad), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert f"{bad} line" in err and "malformed YAML" in err
    assert main(["train", "--method", "nope", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--method: unknown method 'nope' (known: " in err and "did you mean" not in err
    assert "null (load generator, not a paper method)" in err
    assert main(["train", "--method", "whenwo", "--workdir", str(tmp_path / "w")]) == 2
    assert "unknown method 'whenwo' (did you mean 'whenwho'?" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text("method: whenwho\nconfig: {mode: joint}\n")
    assert main(["train", "--config", str(other), "--method", "staged"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


# What each method's tracked run must show beyond the generic: params, per-epoch metric, keys.
TRACKED = {
    "staged": (
        {"staged.selection": "threshold", "features.fixed_frames": "256"},
        "train/eta",
        ("test/lwlrap", "val/verified_lwlrap", "train/masked_fraction", "train/stage"),
    ),
    "mtl_attention": (
        {"pooling": "two_step", "mtl.alpha": "0.001"},
        "val/ap_micro",
        ("test/ap_micro", "test/auc_macro", "test/frame_auc", "test/selected_epoch"),
    ),
}


@pytest.mark.parametrize("method", sorted(TRACKED))
def test_tiny_run_of_each_method_is_tracked(method, tmp_path):
    params, per_epoch, keys = TRACKED[method]
    args = ["train", "--method", method, "--scale", "tiny", "--workdir", str(tmp_path)]
    assert main([*args, "--experiment", "t"]) == 0
    client = MlflowClient(tracking_uri_for(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FINISHED"
    assert {k: run.data.params[k] for k in params} == params
    assert [m.step for m in client.get_metric_history(run.info.run_id, per_epoch)] == [1, 2]
    assert set(keys) <= set(run.data.metrics)
    figures = client.list_artifacts(run.info.run_id, "figures")
    assert figures and all(f.path.endswith(".png") for f in figures)


def test_train_runs_with_the_threads_it_is_given_and_sets_them_back(tmp_path):
    """`sedsweep best` retrains with a trial's threads (issue 35: 40 s an epoch on every core
    of a loaded machine against 1.5 s with one thread); torch's setting is restored after."""
    import torch

    from sedsweep.runspec import RunSpec, resolve
    from sedsweep.train import train

    before = torch.get_num_threads()
    seen: list[int] = []
    resolved = resolve(RunSpec(method="null", scale="tiny", config={"epochs": 2}))
    on_epoch = lambda epoch, metrics: seen.append(torch.get_num_threads())  # noqa: E731
    train(resolved, workdir=tmp_path, progress=False, on_epoch=on_epoch, threads=1)
    assert seen == [1, 1] and torch.get_num_threads() == before
    if before > 1:  # without `threads` the loop keeps torch's own setting
        train(resolved, workdir=tmp_path, progress=False, on_epoch=on_epoch)
        assert seen[2:] == [before, before]
