"""Architecture rules that must hold as the code grows.

Floors, lowest first (a module may import its own floor and those below, never one above):

    base      errors, config, fsio, processes, tracking (MLflow names and client; mlflow imported
              lazily), journal (journaled tracking: events to a file, replayed into MLflow)
    nn        nn/*, metrics, validity (the training-validity gate: numbers already logged)
    data      data/*
    features  features
    spec      runspec, and the method registry (methods/__init__.py: a table of names, no method)
    methods   methods/* (base, evaluation, one module per paper)
    loop      loop
    train     train
    sweep     sweep/*
    report    report/* (read-only: never imports torch or ray)
    select    selection (best config: confirmation sweeps, re-training, model registry),
              evidence_sweeps (runs the evidence sweeps and writes EVIDENCE.md from their CSVs)
    cli       cli, slurm (the Slurm job launcher: `python -m sedsweep.slurm`)

Imports are read from the sources (every `import`, at module level or inside a function: a
lazy import is an arrow too); imports under `if TYPE_CHECKING:` are annotations only and are
not arrows. Method classes are found by name through the registry (`importlib`), like Ray
Tune's searcher table: that lookup is how the spec floor reaches a method without an arrow up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sedsweep.methods import REGISTRY

from .sweeps import grid_spec, grid_trials, log_sweep

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "sedsweep"

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("sedsweep", "sedsweep.errors", "sedsweep.config", "sedsweep.fsio",
              "sedsweep.processes", "sedsweep.tracking", "sedsweep.journal")),
    ("nn", ("sedsweep.nn", "sedsweep.metrics", "sedsweep.validity")),
    ("data", ("sedsweep.data",)),
    ("features", ("sedsweep.features",)),
    ("spec", ("sedsweep.runspec", "=sedsweep.methods")),
    ("methods", ("sedsweep.methods",)),
    ("loop", ("sedsweep.loop",)),
    ("train", ("sedsweep.train",)),
    ("sweep", ("sedsweep.sweep",)),
    ("report", ("sedsweep.report",)),
    ("select", ("sedsweep.selection", "sedsweep.evidence_sweeps")),
    ("cli", ("sedsweep.cli", "sedsweep.slurm")),
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    """The floor of a sedsweep module: an exact entry (`=name`) wins, else the longest prefix."""
    exact = [level for level, (_, names) in enumerate(FLOORS) if f"={module}" in names]
    if exact:
        return exact[0]
    matches = [
        (len(name), level)
        for level, (_, names) in enumerate(FLOORS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    assert matches, f"{module} is on no floor: add it to FLOORS (and to this file's docstring)"
    return max(matches)[1]


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(path: Path) -> set[str]:
    """Top-level packages and sedsweep modules a source file imports at run time."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from sedsweep.report import tables` names a module, not an attribute
            found |= {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
    return found


def sedsweep_imports(path: Path) -> set[str]:
    return {m for m in imports(path) if m == "sedsweep" or m.startswith("sedsweep.")}


def test_every_module_has_a_floor():
    for name in MODULES:
        floor(name)


def test_no_module_imports_a_floor_above_it():
    upward = [
        f"{name} ({FLOORS[floor(name)][0]}) imports {target} ({FLOORS[floor(target)][0]})"
        for name, path in MODULES.items()
        for target in sorted(sedsweep_imports(path))
        if floor(target) > floor(name)
    ]
    assert upward == []


def test_no_import_cycles():
    graph = {
        name: {t for t in sedsweep_imports(path) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, nxt])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            assert cycle is None, " -> ".join(cycle)


def test_the_floor_checker_sees_lazy_imports_and_skips_type_checking(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sedsweep.selection import select_best\n"
        "else:\n    import sedsweep.fsio\n"
        "def f():\n    from sedsweep.report.runs import load_sweep_runs\n"
    )
    assert sedsweep_imports(source) == {"sedsweep.fsio", "sedsweep.report.runs"}


@pytest.mark.parametrize("layer", ["sedsweep.sweep", "sedsweep.methods", "sedsweep.report"])
def test_lower_layers_never_import_what_drives_them(layer):
    """sweep never imports report or select; methods never loop/train/sweep; report never
    select (the runner's `on_finish` hook and `selection.py` carry those arrows upwards)."""
    banned = {
        "sedsweep.sweep": ("sedsweep.report", "sedsweep.selection", "sedsweep.cli"),
        "sedsweep.methods": ("sedsweep.loop", "sedsweep.train", "sedsweep.sweep"),
        "sedsweep.report": ("sedsweep.selection", "sedsweep.cli", "sedsweep.train"),
    }[layer]
    bad = [
        f"{name} imports {t}"
        for name, path in MODULES.items()
        if name.startswith(layer + ".")
        for t in sedsweep_imports(path)
        if t.startswith(banned)
    ]
    assert bad == []


PROBE = """
import sys
loaded = {{m.split(".")[0] for m in sys.modules}}
print("loaded:" + ",".join(sorted(loaded & {banned!r})))
"""


def loaded_after(code: str, banned: set[str]) -> set[str]:
    """Which of the top-level packages `banned` are in sys.modules after running `code`."""
    probe = code + PROBE.format(banned=banned)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.splitlines()[-1]
    assert last.startswith("loaded:"), out.stdout[-3000:]
    return set(filter(None, last.removeprefix("loaded:").split(",")))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_methods_never_import_ray_mlflow_or_optuna(name):
    module = REGISTRY[name].partition(":")[0]
    assert loaded_after(f"import {module}", {"ray", "mlflow", "optuna"}) == set()


def test_report_modules_never_import_torch_or_ray():
    report = [n for n in MODULES if n.startswith("sedsweep.report")]
    code = "\n".join(f"import {n}" for n in report)
    assert loaded_after(code, {"torch", "ray"}) == set()


def test_an_actor_loads_the_trainable_without_torch():
    """Tune loads the trainable's module into every actor it starts, also into actors that
    never get a trial (short trials go to the actor that frees up first): torch comes with
    the first trial an actor runs (bench_scale: 100 half-second trials took 56 s with torch
    loaded at actor start, 33 s without)."""
    assert loaded_after("import sedsweep.sweep.trainable", {"torch"}) == set()


def test_spec_and_registry_load_no_method():
    code = "import sedsweep.runspec, sedsweep.sweep.spec, sedsweep.methods"
    assert loaded_after(code, {"torch", "ray", "mlflow"}) == set()


def test_read_only_commands_import_neither_torch_nor_ray(tmp_path, make_corpus):
    """`sedsweep table`, `dashboard` and `data info` on a real store and corpus, run to the
    end in a fresh interpreter, never load torch or ray."""
    workdir = tmp_path / "w"
    log_sweep(workdir, grid_spec(), grid_trials())
    corpus = make_corpus()
    commands = {
        "table": ["table", "grid", "--workdir", str(workdir), "--format", "csv"],
        "dashboard": ["dashboard", "grid", "--workdir", str(workdir), "--out", str(tmp_path / "d")],
        "data info": ["data", "info", str(corpus)],
    }
    for what, argv in commands.items():
        code = f"from sedsweep.cli import main\nassert main({argv!r}) == 0"
        assert loaded_after(code, {"torch", "ray"}) == set(), what
    assert (tmp_path / "d" / "index.html").is_file()


def test_platform_is_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()
