"""Search-space files: shipped files validate; each defect is one UserError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sedsweep.cli import main
from sedsweep.errors import UserError
from sedsweep.methods import REGISTRY
from sedsweep.sweep.registry import SAMPLERS, SCHEDULERS, make_scheduler
from sedsweep.sweep.spec import load_sweep, trial_config

from .sweeps import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "search_spaces" / "quickstart.yaml"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_files_validate_at_every_scale(path):
    for scale in ("tiny", "paper"):
        plan = load_sweep(path, scale=scale)
        assert plan.spec.method in REGISTRY
        assert plan.n_trials >= 1 and plan.epochs >= 1
        assert plan.spec.name in plan.describe()


def test_table3_trial_arithmetic():
    plan = load_sweep(ROOT / "search_spaces" / "whenwho_table3.yaml", scale="tiny")
    assert len(plan.grid_cells) == 6 and len(plan.replicate_cells) == 3
    assert plan.n_trials == 18
    assert plan.grid_cells[3] == {
        "mode": "joint",
        "input.joint": "hnh",
        "joint.w_when": 0.5,
        "joint.w_who": 5.0,
    }
    assert plan.epochs == plan.base.config.epochs  # tiny scale: the scale's epochs


def test_overrides_and_grid_product(tmp_path):
    spec = {
        "name": "g",
        "method": "whenwho",
        "objective": {"metric": "val/when_frame_auc"},
        "search": {"algorithm": "grid"},
        "space": {
            "mode": {"type": "grid", "values": ["separate", "tied"]},
            "when_loss": {"type": "grid", "values": ["max", "mmm", "noisy_or"]},
        },
        "replicates": {"seed": [0, 1]},
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(spec))
    plan = load_sweep(path, {"budget.max_epochs": 3, "fixed.optim.lr": 0.01}, scale="tiny")
    assert plan.n_trials == 2 * 3 * 2 and plan.epochs == 3
    assert plan.base.config.optim.lr == 0.01


GOOD = {
    "name": "bad",
    "method": "whenwho",
    "scale": "tiny",
    "objective": {"metric": "val/when_frame_auc"},
    "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
}

PARETO = [{"metric": "val/when_frame_auc"}, {"metric": "val/who_auc_macro"}]
LOSS = {"type": "categorical", "choices": ["mmm", "max"]}
W_MIN = {"type": "float", "low": 0.0, "high": 1.0}
SEARCH = {**GOOD["space"], "when_loss": LOSS}
CYCLE = {"space": {"when_loss": {**LOSS, "when": {"mode": "joint"}},
                   "mode": {"type": "categorical", "choices": ["separate", "joint"],
                            "when": {"when_loss": "mmm"}}}}  # fmt: skip


OWN_EPOCHS = {"search": {"algorithm": "grid"}, "scheduler": {"type": "none"}, "space": {},
              "cells": [{"when_loss": "mmm"}, {"when_loss": "max", "epochs": 5}]}  # fmt: skip


def claim(**change):
    """A grid over when_loss with seeds and one claim, changed by `change`."""
    one = {"name": "mmm beats max", "source": "Morfi & Stowell, Table 2",
           "metric": "test/when_frame_auc", "direction": "higher",
           "a": {"when_loss": "mmm"}, "b": {"when_loss": "max"}, **change}  # fmt: skip
    return {
        "search": {"algorithm": "grid"},
        "space": {"when_loss": {"type": "grid", "values": ["mmm", "max"]}},
        "replicates": {"seed": [0, 1]},
        "claims": [one],
    }


BAD = {
    "unknown_method": ({"method": "nope"}, "method: unknown method 'nope'"),
    "unknown_top_key": ({"colour": 1}, "unknown key 'colour' (known: name, description"),
    "misspelt_top_key": ({"budgett": {}}, "unknown key 'budgett' (did you mean 'budget'?"),
    "misspelt_nested_key": (
        {"budget": {"trails": 3}},
        "unknown key 'budget.trails' (did you mean 'budget.trials'? known under 'budget': ",
    ),
    "misspelt_key_in_union": (  # objective: one or a list of objectives
        {"objective": {"metricc": "val/when_frame_auc"}},
        "unknown key 'objective.metricc' (did you mean 'objective.metric'?",
    ),
    "unknown_key_in_tagged_param": (
        {"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 0.2, "lo": 0.1}}},
        "unknown key 'space.optim.lr.lo' (did you mean 'space.optim.lr.low'? "
        "known under 'space.optim.lr': when, type, low, high, log, step)",
    ),
    "missing_corpus_directory": (
        {"data": {"path": "no/such/corpus"}},
        "data.path: corpus directory not found: no/such/corpus (looked in /",
    ),
    "missing_shared_recordings": (  # a shipped file run where ../shared is not beside it
        {"data": {"remix": {"events": "../shared/absent/esc10", "backgrounds": "."}}},
        "data.remix.events: events folder not found: ../shared/absent/esc10 (looked in /",
    ),
    "misspelt_algorithm": (
        {"search": {"algorithm": "tpee"}},
        "key 'search.algorithm': unknown value 'tpee' (did you mean 'tpe'? known: tpe, random",
    ),
    "misspelt_scheduler": (
        {"scheduler": {"type": "ashaa"}},
        "key 'scheduler.type': unknown value 'ashaa' (did you mean 'asha'?",
    ),
    "unknown_space_key": (
        {"space": {"optim.lrr": {"type": "float", "low": 0.1, "high": 0.2}}},
        "space.optim.lrr: 0.1 rejected by whenwho: unknown key 'optim.lrr'",
    ),
    "unknown_fixed_key": ({"fixed": {"mmm": {"w_mx": 1}}}, "fixed: unknown key 'mmm.w_mx'"),
    "low_above_high": (
        {"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}},
        "space.optim.lr: low (0.1) > high (0.01)",
    ),
    "log_touching_zero": (
        {"space": {"mmm.w_max": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
        "space.mmm.w_max: a log range must be > 0",
    ),
    "rejected_choice": (
        {"space": {"mode": {"type": "categorical", "choices": ["joint", "sideways"]}}},
        "space.mode: 'sideways' rejected by whenwho",
    ),
    "negative_weight": (
        {"space": {"mmm.w_min": {"type": "float", "low": -1.0, "high": 1.0}}},
        "space.mmm.w_min: -1.0 rejected",
    ),
    "grid_on_tpe": (
        {"space": {"mode": {"type": "grid", "values": ["joint"]}}},
        "space.mode: grid values need search.algorithm: grid",
    ),
    "continuous_on_grid": (
        {"search": {"algorithm": "grid"}},
        "space.optim.lr: a grid search takes only 'grid' parameters",
    ),
    "cells_without_grid": ({"cells": [{"mode": "joint"}]}, "cells: explicit cells need"),
    "test_objective": (
        {"objective": {"metric": "test/when_frame_auc"}},
        "objective.metric: the objective must not be a test metric",
    ),
    "fixed_and_searched": ({"fixed": {"optim": {"lr": 0.1}}}, "space.optim.lr: is both fixed"),
    "bad_replicate": (
        {
            "search": {"algorithm": "grid"},
            "space": {"mode": {"type": "grid", "values": ["tied"]}},
            "replicates": {"seed": ["x"]},
        },
        "replicates.seed: 'x' rejected",
    ),
    "replicates_without_grid": ({"replicates": {"seed": [0, 1]}}, "replicates: replicates repeat"),
    "step_mismatch": (
        {"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 0.25, "step": 0.1}}},
        "space.optim.lr: high - low is not a multiple of step 0.1",
    ),
    "zero_trials": ({"budget": {"trials": 0}}, "key 'budget.trials'"),
    "unknown_scheduler": ({"scheduler": {"type": "pbt"}}, "key 'scheduler.type'"),
    "unknown_scale": ({"scale": "huge"}, "--scale: unknown scale 'huge'"),
    "unknown_objective_metric": (
        {"objective": {"metric": "val/when_frame_acu"}},
        "objective.metric: whenwho logs no metric 'when_frame_acu'",
    ),
    "objective_without_split": (
        {"objective": {"metric": "when_frame_auc"}},
        "objective.metric: expected SPLIT/NAME",
    ),
    "pareto_with_one_metric": (
        {"objective": [{"metric": "val/when_frame_auc"}]},
        "objective: a Pareto objective lists two or more metrics",
    ),
    "pareto_metric_twice": (
        {
            "objective": [{"metric": "val/when_frame_auc"}, {"metric": "val/when_frame_auc"}],
            "scheduler": {"type": "none"},
        },
        "objective[1].metric: is listed twice",
    ),
    "pareto_scheduler_without_metric": (
        {"objective": PARETO},
        "scheduler: several objectives: name the one early stopping reads",
    ),
    "pareto_on_cmaes": (
        {"objective": PARETO, "scheduler": {"type": "none"}, "search": {"algorithm": "cmaes"}},
        "search.algorithm: 'cmaes' cannot search several objectives",
    ),
    "scheduler_metric_not_an_objective": (
        {"objective": PARETO, "scheduler": {"metric": "val/who_ap_micro"}},
        "scheduler.metric: is not an objective metric",
    ),
    "claims_on_a_search": (
        {
            "claims": [
                {
                    "name": "c",
                    "metric": "test/when_frame_auc",
                    "direction": "higher",
                    "a": {"when_loss": "mmm"},
                }
            ]
        },
        "claims: claims compare cells over replicates",
    ),
    "claim_cell_that_does_not_exist": (
        claim(a={"when_loss": "noisy_or"}),
        "claims[0].a: no cell has when_loss = 'noisy_or'",
    ),
    "claim_key_the_grid_does_not_vary": (
        claim(a={"mode": "joint"}),
        "claims[0].a: 'mode' is not a key the grid varies",
    ),
    "claim_metric_not_logged": (
        claim(metric="test/who_f1"),
        "claims[0].metric: whenwho logs no metric 'who_f1'",
    ),
    "claim_direction_unknown": (claim(direction="bigger"), "key 'claims.0.direction'"),
    "claim_same_cells": (
        claim(b={"when_loss": "mmm"}),
        "claims[0].b: a and b select some of the same cells",
    ),
    "claim_sides_name_other_keys": (
        claim(b={"optim.lr": 0.01}),
        "claims[0].b: 'optim.lr' is not a key the grid varies",
    ),
    "table_metric_not_logged": (
        {"table": {"metrics": ["test/when_frame_acc"]}},
        "table.metrics[0]: whenwho logs no metric 'when_frame_acc'",
    ),
    "trials_is_a_bool": ({"budget": {"trials": True}}, "key 'budget.trials'"),
    "trials_absurd": ({"budget": {"trials": 10**12}}, "key 'budget.trials'"),
    "hop_absurd": ({"features": {"overrides": {"hop_length": 10**8}}}, "hop_length"),
    "claim_negative_min_effect": (claim(min_effect=-0.1), "key 'claims.0.min_effect'"),
    "when_unknown_key": (
        {"space": {**SEARCH, "mmm.w_min": {**W_MIN, "when": {"when_los": "mmm"}}}},
        "space.mmm.w_min.when: 'when_los' is not a searched categorical or grid key "
        "(those are: when_loss)",
    ),
    "when_unknown_value": (
        {"space": {**SEARCH, "mmm.w_min": {**W_MIN, "when": {"when_loss": "mmmm"}}}},
        "space.mmm.w_min.when: when_loss never takes 'mmmm' (it takes 'mmm', 'max')",
    ),
    "when_reads_a_float": (
        {"space": {**SEARCH, "mmm.w_min": {**W_MIN, "when": {"optim.lr": 0.001}}}},
        "space.mmm.w_min.when: 'optim.lr' is a float parameter: a condition reads a categorical",
    ),
    "when_on_itself": (
        {"space": {**SEARCH, "when_loss": {**LOSS, "when": {"when_loss": "mmm"}}}},
        "space.when_loss.when: a key cannot act on a condition on itself",
    ),
    "when_cycle": (CYCLE, "the conditions form a cycle: mode → when_loss → mode"),
    "cell_epochs_with_a_scheduler": (
        {**OWN_EPOCHS, "scheduler": {"type": "asha"}},
        "cells[1].epochs: a cell's own epochs need scheduler: none (the asha scheduler",
    ),
    "cell_epochs_not_whole": (
        {**OWN_EPOCHS, "cells": [{"when_loss": "mmm", "epochs": 2.5}]},
        "cells[0].epochs: 2.5 rejected by whenwho",
    ),
    "epochs_searched": (
        {"space": {**SEARCH, "epochs": {"type": "int", "low": 2, "high": 9}}},
        "space.epochs: epochs are not searched",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_names_file_and_key(tmp_path, case):
    change, needle = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(UserError) as err:
        load_sweep(path)
    text = str(err.value)
    assert needle in text, text
    assert "\n" not in text
    if not needle.startswith("--"):
        assert str(path) in text


def test_a_cell_may_set_its_own_epochs(tmp_path):
    """An arm that needs longer to converge gets its own budget; the others keep the sweep's."""
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **OWN_EPOCHS}))
    plan = load_sweep(path)
    base = plan.base.config.epochs
    assert [plan.budget(c) for c in plan.grid_cells] == [base, 5]
    assert plan.epochs == max(base, 5) and plan.base_epochs == base
    config = trial_config(plan.base.config.model_dump(mode="json"), {"epochs": 5}, base)
    assert config["epochs"] == 5
    capped = load_sweep(path, {"budget.max_epochs": 1})  # budget.max_epochs caps every arm
    assert [capped.budget(c) for c in capped.grid_cells] == [1, 1] and capped.epochs == 1


def test_a_grid_skips_the_combinations_a_condition_rules_out(tmp_path, capsys):
    """mtl-like: α acts only for two_step, so gap × α is one cell, not three."""
    spec = {**GOOD, "search": {"algorithm": "grid"}, "scheduler": {"type": "none"},
            "space": {"when_loss": {"type": "grid", "values": ["mmm", "max"]},
                      "mmm.w_min": {"type": "grid", "values": [0.0, 0.5, 1.0],
                                    "when": {"when_loss": ["mmm"]}}},
            "replicates": {"seed": [0, 1]}}  # fmt: skip
    path = tmp_path / "cond.yaml"
    path.write_text(yaml.safe_dump(spec))
    plan = load_sweep(path)
    cells = sorted(sorted(cell.items()) for cell in plan.grid_cells)
    assert cells == [
        [("mmm.w_min", 0.0), ("when_loss", "mmm")], [("mmm.w_min", 0.5), ("when_loss", "mmm")],
        [("mmm.w_min", 1.0), ("when_loss", "mmm")], [("when_loss", "max")],
    ]  # fmt: skip
    assert plan.n_trials == 4 * 2
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    shown = "mmm.w_min: {'type': 'grid', 'values': [0.0, 0.5, 1.0]} only when when_loss in [mmm]"
    assert shown in out
    assert "trials 8 = 4 grid cells × 2 replicate cells" in out


def test_per_scale_overrides_apply_before_set(tmp_path):
    path = ROOT / "search_spaces" / "whenwho_table3.yaml"
    assert load_sweep(path).spec.resources.gpu > 0
    assert load_sweep(path, scale="tiny").spec.resources.gpu == 0
    assert load_sweep(path, {"resources.gpu": 0.5}, scale="tiny").spec.resources.gpu == 0.5


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nspace:\n  a: {type: float, low: 1\n")
    with pytest.raises(UserError, match=r"broken.yaml line \d+: malformed YAML"):
        load_sweep(path)


def test_dotted_overrides_index_lists_without_touching_the_base():
    from sedsweep.config import with_overrides

    base = {"staged": {"stages": [10, 20, 5], "k": 3}}
    out = with_overrides(base, {"staged.stages.1": 99, "staged.k": 4, "new.key": 1})
    assert out == {"staged": {"stages": [10, 99, 5], "k": 4}, "new": {"key": 1}}
    assert base == {"staged": {"stages": [10, 20, 5], "k": 3}}


def test_claims_and_pareto_objectives_are_shown_in_the_plan(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **claim(), "objective": PARETO,
                                    "scheduler": {"type": "none"}}))  # fmt: skip
    plan = load_sweep(path)
    text = plan.describe()
    assert "objective val/when_frame_auc (max), val/who_auc_macro (max)" in text
    assert "claim 'mmm beats max'" in text and "(source: Morfi & Stowell, Table 2)" in text
    assert plan.spec.primary.metric == "val/when_frame_auc"


def test_dry_run_refuses_a_bad_claim(tmp_path, capsys):
    from sedsweep.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **claim(a={"when_loss": "noisy_or"})}))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}: claims[0].a: no cell has" in err


def test_misleading_inputs_get_the_real_reason(tmp_path):
    """Issue 15 F15: a directory given as the file, and `--set space.KEY...`."""
    with pytest.raises(UserError, match="YAML file: is a directory"):
        load_sweep(tmp_path)
    with pytest.raises(UserError) as err:
        load_sweep(ROOT / "search_spaces" / "quickstart.yaml", {"space.optim.lr.low": 5})
    assert str(err.value).startswith("--set space.optim.lr.low: a searched parameter is keyed")


def test_a_yaml_bomb_is_refused_before_it_expands(tmp_path, capsys):
    """Issue 15 Y34: a billion-laughs entry in an unused `scales:` passed --dry-run, and the
    real run ate memory until killed."""
    from sedsweep.cli import main

    laughs = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(
        yaml.safe_dump(GOOD) + "scales:\n  unused:\n    " + laughs.replace("\n", "\n    ")
    )
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"sedsweep: error: {path}: its aliases expand to more than 100,000 values: refusing it"
    )


# -- checkpoint policy (issue 17) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("grace", "rf", "max_t"), [(1, 2.0, 6), (2, 2.0, 6), (1, 3.0, 30), (2, 2.5, 20), (4, 2.0, 4)]
)
def test_asha_rungs_are_the_epochs_ray_decides_on(grace, rf, max_t):
    """`rung_epochs` against Ray's own ASHA: the milestones its bracket holds, each decided on
    the first integer epoch at or past it, plus the last epoch."""
    from ray.tune.schedulers import ASHAScheduler

    from sedsweep.sweep.spec import Scheduler, rung_epochs

    ray_asha = ASHAScheduler(
        time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=rf,
        metric="m", mode="max",
    )  # fmt: skip
    (bracket,) = ray_asha._brackets
    milestones = {m for m, _ in bracket._rungs}
    decided = {next(e for e in range(1, max_t + 1) if e >= m) for m in milestones if m <= max_t}
    ours = rung_epochs(Scheduler(type="asha", grace_period=grace, reduction_factor=rf), max_t)
    assert set(ours) == decided | {max_t}
    assert ours == sorted(ours)


def _policy(**sets: object):
    from sedsweep.sweep.spec import CheckpointPolicy

    plan = load_sweep(ROOT / "search_spaces" / "quickstart.yaml", sets)
    return CheckpointPolicy.of(plan.spec, plan.epochs)


def test_checkpoints_fall_on_rungs_the_last_epoch_and_after_the_interval():
    policy = _policy()  # quickstart: ASHA grace 2, rf 2, 6 epochs; 30 s by default
    assert policy.always == {2, 4, 6} and policy.min_interval_s == 30.0
    assert [e for e in range(1, 7) if policy.due(e, 5.0, 6)] == [2, 4, 6]
    assert policy.due(1, 30.0, 6) and policy.due(3, 31.0, 6) and not policy.due(3, 29.9, 6)
    assert policy.due(3, 5.0, 3)  # a cell of 3 epochs: its own last epoch
    every = _policy(**{"checkpoint.every_epochs": 1})
    assert all(every.due(e, 0.0, 6) for e in range(1, 7))
    fifo = _policy(
        **{"scheduler.type": "none", "checkpoint.min_interval_s": None,
                     "checkpoint.every_epochs": 4, "budget.max_epochs": 10},
    )  # fmt: skip
    assert fifo.always == {4, 8, 10}
    assert not fifo.due(5, 1e9, 10)  # no time rule: only the listed epochs
    hyperband = _policy(**{"scheduler.type": "hyperband"})
    assert hyperband.always == set(range(1, 7))  # it pauses trials at its milestones


@pytest.mark.parametrize(
    ("key", "value"),
    [("checkpoint.every_epochs", 0), ("checkpoint.min_interval_s", -1), ("checkpoint.often", 1)],
)
def test_bad_checkpoint_settings_are_refused(key, value):
    with pytest.raises(UserError, match="checkpoint"):
        load_sweep(ROOT / "search_spaces" / "quickstart.yaml", {key: value})


@pytest.mark.parametrize("algorithm", sorted(SAMPLERS))
def test_every_registered_sampler_is_built_for_a_sweep(algorithm):
    """The registry names its samplers by class: each resolves in Optuna and searches."""
    from sedsweep.sweep.search import OptunaPruningSearch

    if algorithm == "grid":
        plan = load_sweep(ROOT / "search_spaces" / "whenwho_table3.yaml", scale="tiny")
    else:
        plan = load_sweep(QUICK, {"search.algorithm": algorithm})
    search = OptunaPruningSearch(plan)
    assert type(search.study.sampler).__name__ == SAMPLERS[algorithm].optuna_class
    assert search.suggest("t0")["overrides"]


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_registered_scheduler_is_built_from_its_builder(scheduler):
    """The registry names each scheduler's builder as "module:function" (imported only when
    a sweep runs): each resolves and builds Tune's scheduler, a reproducible ASHA the
    synchronous halving over the searcher's record."""
    from ray.tune.schedulers import TrialScheduler

    from sedsweep.sweep.halving import SynchronousHalving
    from sedsweep.sweep.search import OptunaPruningSearch

    reproducible = [False, True] if SCHEDULERS[scheduler].reproducible else [False]
    for flag in reproducible:
        plan = load_sweep(QUICK, {"scheduler.type": scheduler, "search.reproducible": flag})
        built = make_scheduler(plan, OptunaPruningSearch(plan))
        assert isinstance(built, TrialScheduler)
        assert isinstance(built, SynchronousHalving) == (flag and scheduler == "asha")


def test_a_key_given_twice_is_refused_and_a_merge_may_be_overridden(tmp_path, capsys):
    """Issue 32: two `space:` blocks kept the last without a word (PyYAML's default)."""
    from sedsweep.cli import main

    text = yaml.safe_dump(GOOD, sort_keys=False)
    path = tmp_path / "twice.yaml"
    path.write_text(text + "space:\n  optim.lr: {type: float, low: 0.001, high: 0.1}\n")
    first = 1 + text.splitlines().index("space:")
    second = 1 + len(text.splitlines())
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sedsweep: error: {path} line {second}: malformed YAML: key 'space' is given twice "
        f"(lines {first} and {second})"
    )
    merged = tmp_path / "merged.yaml"  # a merge's keys may be given again: that overrides them
    merged.write_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n")
    from sedsweep.config import load_yaml

    assert load_yaml(merged)["use"] == {"x": 3, "y": 2}


def test_yaml_nested_too_deeply_is_one_line(tmp_path, capsys):
    """Issue 32: a deeply nested YAML file ended in a RecursionError traceback."""
    from sedsweep.cli import main

    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sedsweep: error: {path}: nested too deeply: not a config file"
    )


def test_a_bad_set_value_is_blamed_on_the_set_not_the_file(tmp_path, capsys):
    """Issue 32: errors in `--set` values were reported against the search-space file."""
    from sedsweep.cli import main

    quick = str(QUICK)
    for setting, message in (
        ("budget.trials=many", "--set budget.trials: key 'budget.trials': Input should be a "
                               "valid integer"),
        ("fixed.mmm.w_max=-3", "--set fixed.mmm.w_max: "),
    ):  # fmt: skip
        assert main(["sweep", quick, "--dry-run", "--set", setting]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"sedsweep: error: {message}") and quick not in err, err
    assert main(["sweep", quick, "--dry-run", "--set", "budget.trials=3"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"  # a problem of the file itself stays the file's
    bad.write_text(yaml.safe_dump({**GOOD, "budget": {"trials": "many"}}))
    assert main(["sweep", str(bad), "--dry-run", "--set", "budget.max_epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sedsweep: error: {bad}: key 'budget.trials'"), err


@pytest.mark.parametrize(
    ("setting", "field"),
    [("search.seed=4294967296", "search.seed"), ("fixed.seed=-1", "seed"),
     ("fixed.split_seed=4294967296", "split_seed")],
)  # fmt: skip
def test_a_seed_numpy_cannot_take_is_refused_at_plan_time(setting, field, capsys):
    """Issue 32: a search seed above 2**32 - 1 passed the dry run, then a traceback and a
    FAILED parent run once Optuna seeded numpy with it."""
    from sedsweep.cli import main

    assert main(["sweep", str(QUICK), "--dry-run", "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sedsweep: error: --set {setting.split('=')[0]}: ") and field in err
