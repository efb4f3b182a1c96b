"""One behavioural contract, run over every registered method (as Optuna runs one sampler test
file over every sampler): a method added to the registry gets these checks without writing any.

Each method is built at its own `tiny` scale on its own synthetic corpus, exactly as
`sedsweep train --scale tiny` would build it. `VARIANTS` adds configurations of the existing
methods whose checkpoint state differs in structure (training modes, heads, no decoder); a new
method is checked with its defaults.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sedsweep.config import flatten, with_overrides
from sedsweep.data.synth import GENERATORS
from sedsweep.features import PRESETS, FeatureSet, build_features
from sedsweep.loop import run_epochs
from sedsweep.methods import REGISTRY, get_method
from sedsweep.methods.base import Method, MethodConfig
from sedsweep.runspec import Resolved, RunSpec, corpus_for, resolve

CPU = torch.device("cpu")
PNG = b"\x89PNG\r\n\x1a\n"
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "whenwho": [{"mode": "joint"}, {"mode": "tied"}],
    "staged": [{"activation": "sigmoid"}, {"staged": {"selection": "topk"}}],
    "mtl_attention": [{"mtl": {"alpha": 0.0}}, {"pooling": "atrous"}],
}
CASES = [  # defaults in the fast tier; the variants in the full run (CI)
    pytest.param(
        name,
        variant,
        id=f"{name}-{'-'.join(map(str, variant.values())) or 'default'}",
        marks=[pytest.mark.slow] if variant else [],
    )
    for name in sorted(REGISTRY)
    for variant in [{}, *VARIANTS.get(name, [])]
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, tuple[Resolved, FeatureSet]]:
    """Every method's tiny run spec and the features of its synthetic tiny corpus (built once)."""
    workdir = tmp_path_factory.mktemp("contract")
    runs = {}
    for name in sorted(REGISTRY):
        resolved = resolve(RunSpec(method=name, scale="tiny"))
        corpus = corpus_for(resolved, workdir)
        fs = build_features(corpus, resolved.feature_params, workdir / "cache", progress=False)
        runs[name] = (resolved, fs)
    return runs


def build(tiny_runs, name: str, variant: dict[str, Any]) -> Method:
    resolved, fs = tiny_runs[name]
    data = with_overrides(resolved.config.model_dump(mode="json"), flatten(variant))
    config = resolved.method_cls.Config.model_validate(data)
    return resolved.method_cls(config, fs, CPU)


def same(a: Any, b: Any, where: str = "state") -> None:
    """Deep equality of checkpoint states: tensors and arrays exactly, NaN equal to NaN."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a.isnan(), b.isnan()), where
        assert torch.equal(a.nan_to_num(), b.nan_to_num()), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


# -- the class: what the registry, the run spec and the sweep layer rely on --------------------
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_class_declares_what_specs_and_sweeps_need(name):
    cls = get_method(name)
    assert issubclass(cls, Method) and cls.name == name
    assert issubclass(cls.Config, MethodConfig)
    cls.Config()  # the paper's defaults validate
    assert cls.feature_preset in PRESETS and cls.synthetic_kind in GENERATORS
    assert {"tiny", "small", "paper"} <= set(cls.scales)
    for scale in cls.scales:  # every scale resolves to a valid config and feature parameters
        resolve(RunSpec(method=name, scale=scale))


# -- instances -------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_tiny_scale_builds_and_the_loop_trains_one_epoch(tiny_runs, name, variant):
    method = build(tiny_runs, name, variant)
    metrics = run_epochs(method, 1)
    assert method.epoch == 1 and metrics["epoch"] == 1
    assert math.isfinite(metrics["train/loss"])
    splits = {k.partition("/")[0] for k in metrics}
    assert {"train", "val", "test"} <= splits
    assert isinstance(method.network(), torch.nn.Module)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_state_dict_replays_the_next_epoch_exactly(tiny_runs, name, variant):
    method = build(tiny_runs, name, variant)
    method.train_epoch()
    state = method.state_dict()
    expected = method.train_epoch(), method.evaluate("val"), method.evaluate("test")
    fresh = build(tiny_runs, name, variant)
    for _ in range(2):  # move weights, optimiser moments, rng and epoch away from the state
        fresh.train_epoch()
    fresh.load_state_dict(state)
    assert (fresh.train_epoch(), fresh.evaluate("val"), fresh.evaluate("test")) == expected
    same(fresh.state_dict(), method.state_dict())


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_state_dict_loads_back_as_plain_data(tiny_runs, name, variant, tmp_path):
    """Trials load checkpoints with torch.load(weights_only=True): the state must be data."""
    method = build(tiny_runs, name, variant)
    method.train_epoch()
    torch.save(method.state_dict(), tmp_path / "state.pt")
    same(torch.load(tmp_path / "state.pt", weights_only=True), method.state_dict())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_state_dict_is_a_detached_copy(tiny_runs, name):
    method = build(tiny_runs, name, {})
    state = method.state_dict()
    snapshot = method.state_dict()
    method.train_epoch()
    same(state, snapshot)  # training after state_dict() does not reach into the saved state
    method.load_state_dict(state)
    method.train_epoch()
    same(state, snapshot)  # nor does training after load_state_dict()


@pytest.mark.parametrize(("name", "variant"), CASES)
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_every_split_reports_finite_metrics(tiny_runs, name, variant, amp):
    method = build(tiny_runs, name, {**variant, "amp": amp})
    method.train_epoch()
    for split in ("train", "val", "test"):
        if len(method.splits[split]) == 0:
            assert method.evaluate(split) == {}
            continue
        metrics = method.evaluate(split)
        assert "loss" in metrics and len(metrics) > 1, (split, metrics)
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        assert not bad, (split, bad)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_artifacts_are_pngs_and_nothing_else(tiny_runs, name, tmp_path: Path):
    method = build(tiny_runs, name, {})
    method.train_epoch()
    paths = method.artifacts(tmp_path)
    assert paths, "the tiny corpus has test clips to draw"
    for path in paths:
        assert path.parent == tmp_path and path.read_bytes()[:8] == PNG
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no temporary files left behind


# -- one model per trial: metric names and the selected epoch's validation values ------------
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_evaluate_reports_only_declared_metric_names(tiny_runs, name, variant):
    method = build(tiny_runs, name, variant)
    method.train_epoch()
    declared = method.metric_names()
    for split in ("train", "val", "test"):
        unknown = set(method.evaluate(split)) - declared
        assert not unknown, (split, unknown)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_reference_levels_are_named_like_the_metrics_they_judge(tiny_runs, name, variant):
    """`references()`: training losses the method logs, and chance levels of metrics it
    declares; finite; logged once per run under chance/ (the validity gate's yardstick)."""
    method = build(tiny_runs, name, variant)
    refs = method.references()
    first = method.train_epoch()
    declared = method.metric_names()
    for key, value in refs.items():
        split, _, metric = key.partition("/")
        assert math.isfinite(value), key
        if split == "train":
            assert metric in first, (key, sorted(first))  # a loss the trainer reports
        else:
            assert split in ("val", "test") and metric in declared, key
    if name != "null":  # the load generator trains nothing: it is not judged
        assert any(k.startswith("train/") for k in refs)
        assert any(k.startswith("val/") for k in refs) and any(k.startswith("test/") for k in refs)
    fresh = build(tiny_runs, name, variant)
    logged = []
    run_epochs(fresh, 2, on_epoch=lambda epoch, m: logged.append(m))
    assert {k.removeprefix("chance/"): v for k, v in logged[0].items() if "chance/" in k} == refs
    assert not any(k.startswith("chance/") for k in logged[1])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_loop_logs_the_delivered_models_validation_values(tiny_runs, name):
    method = build(tiny_runs, name, {})
    history: dict[int, dict[str, float]] = {}
    run_epochs(method, 2, on_epoch=lambda epoch, m: history.__setitem__(epoch, dict(m)))
    last = history[2]
    selected = int(last["selected_epoch"])
    assert selected == method.selection_epoch()
    if type(method).selection_epoch is Method.selection_epoch:
        assert selected == 2  # a method that does not select delivers its last epoch
    vals = {k.removeprefix("val/"): v for k, v in history[selected].items() if k.startswith("val/")}
    assert vals and {k: last[f"best_val/{k}"] for k in vals} == vals
    # the record survives a checkpoint: a resumed run reports the same selected values
    fresh = build(tiny_runs, name, {})
    fresh.load_state_dict(method.state_dict())
    assert fresh.selected_val == method.selected_val


class PicksEpochOne(get_method("null")):  # type: ignore[misc,valid-type]
    """The null method delivering its first epoch's weights, as a selecting method may."""

    def selection_epoch(self) -> int:
        return min(self.epoch, 1)


def test_best_val_stays_at_the_selected_epoch_while_val_moves(tiny_runs):
    resolved, fs = tiny_runs["null"]
    method = PicksEpochOne(resolved.config, fs, CPU)
    seen = []
    run_epochs(method, 3, on_epoch=lambda epoch, m: seen.append(dict(m)))
    assert [m["selected_epoch"] for m in seen] == [1, 1, 1]
    assert seen[0]["val/score"] != seen[2]["val/score"]  # the null score climbs every epoch
    assert [m["best_val/score"] for m in seen] == [seen[0]["val/score"]] * 3


# -- figures never fail a run (issue 15, F12) ---------------------------------------------------
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_class_names_with_mathtext_render_as_plain_text(tiny_runs, name, tmp_path):
    import dataclasses

    from sedsweep.methods.base import render_artifacts

    resolved, fs = tiny_runs[name]
    hostile = dataclasses.replace(fs, classes=[f"cost $\\frac{{$ {c}" for c in fs.classes])
    method = resolved.method_cls(resolved.config, hostile, CPU)
    method.train_epoch()
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": True}):  # what used to crash
        written = render_artifacts(method, tmp_path)
    if type(method).artifacts is not Method.artifacts:  # a method that draws drew
        assert written, name
    assert all(p.read_bytes().startswith(PNG) for p in written)


class BrokenFigures(get_method("null")):  # type: ignore[misc,valid-type]
    def artifacts(self, out_dir: Path) -> list[Path]:
        raise RuntimeError("a plotting bug")


def test_a_failing_figure_is_logged_not_raised(tiny_runs, tmp_path, caplog):
    from sedsweep.methods.base import render_artifacts

    resolved, fs = tiny_runs["null"]
    method = BrokenFigures(resolved.config, fs, CPU)
    assert render_artifacts(method, tmp_path) == []
    assert "null: no figures (RuntimeError: a plotting bug)" in caplog.text


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_batches_gathered_from_the_map_train_exactly_like_resident_clips(
    tiny_runs, name, monkeypatch
):
    """A paper-scale corpus on the CPU is read batch by batch from the feature cache's map
    (`ClipInputs`); it must give the same numbers as the resident tensor, bit for bit."""
    resident = build(tiny_runs, name, {})
    monkeypatch.setenv("SEDSWEEP_RESIDENT_MAX_MB", "0")
    gathered = build(tiny_runs, name, {})
    if getattr(resident, "x", None) is None:
        pytest.skip(f"{name} keeps no z-scored clips")
    assert resident.x.resident and not gathered.x.resident
    idx = np.array([3, 0, 2])
    for frames, starts in [(None, None), (2, None), (2, np.array([1, 0, 2]))]:
        expected = resident.x.take(idx, frames, starts)
        assert torch.equal(gathered.x.take(idx, frames, starts), expected)
    timing = "epoch_time_s"
    expected = {k: v for k, v in run_epochs(resident, 2).items() if k != timing}
    assert {k: v for k, v in run_epochs(gathered, 2).items() if k != timing} == expected
    same(gathered.state_dict(), resident.state_dict())


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_training_under_deterministic_algorithms_repeats_bit_for_bit(tiny_runs, name, variant):
    """What a reproducible sweep relies on (trainable `deterministic`): with torch's
    deterministic algorithms strictly on (an operation without a deterministic kernel raises,
    here on CPU), two builds of the same config train to the same metrics and state."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            method = build(tiny_runs, name, variant)
            metrics = [method.train_epoch() for _ in range(2)], method.evaluate("val")
            runs.append((metrics, method.state_dict()))
    finally:
        torch.use_deterministic_algorithms(before)
    (first, state), (second, again) = runs
    assert first == second
    same(state, again)
