"""The bad-input census (issue 15): every malformed input the test suite knows, run through the
CLI as a user would. Each must end with exit code 2, exactly one line on stderr of the form
`sedsweep: error: WHERE: what`, no traceback, and nothing written where the command was
pointed (the directory it ran in is the same before and after).

The cases come from the tables the other test files keep (search-space files, corpora), so a
case added there is counted here too, plus command-line cases of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sedsweep.cli import main
from tests.test_corpus import BAD_INPUTS
from tests.test_sweep_spec import BAD, GOOD

ROOT = Path(__file__).resolve().parents[2]
NULL = str(ROOT / "search_spaces" / "null_load.yaml")
QUICK = str(ROOT / "search_spaces" / "quickstart.yaml")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file, directory and link below `root` with its size and modification time (a
    link's own: it may lead nowhere, or to itself)."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in root.rglob("*")}  # fmt: skip


def one_line_exit_2(args: list[str], root: Path, capsys, needle: str) -> None:
    before = snapshot(root)
    assert main(args) == 2, args
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sedsweep: error: ") and "Traceback" not in err + captured.out
    assert needle in err, (needle, err)
    assert snapshot(root) == before, "something was written"


# -- search-space files, through `sweep FILE --dry-run` ------------------------------------------
@pytest.mark.parametrize("case", sorted(BAD))
def test_search_space_census(case, tmp_path, capsys):
    change, needle = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    one_line_exit_2(["sweep", str(path), "--dry-run"], tmp_path, capsys, needle)


# -- corpora, through `data info DIR` ------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_corpus_census(case, make_corpus, capsys):
    root = make_corpus()
    edit, needles = BAD_INPUTS[case]
    edit(root)
    one_line_exit_2(["data", "info", str(root)], root, capsys, needles[-1])


# -- the command line ----------------------------------------------------------------------------
def null_sweep(tmp: Path, *extra: str) -> list[str]:
    """`sweep` of the null load file at tiny scale into a work directory under `tmp`."""
    return ["sweep", NULL, "--scale", "tiny", "--workdir", str(tmp / "w"), *extra]


def _file(tmp: Path) -> str:
    path = tmp / "a-file"
    path.write_text("not a directory")
    return str(path)


CLI: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "workdir_is_a_file": (
        lambda t: ["train", "--method", "null", "--scale", "tiny", "--workdir", _file(t)],
        "is a file, not a directory",
    ),
    "storage_is_a_file": (
        lambda t: null_sweep(t, "--storage", _file(t)),
        "--storage",
    ),
    "address_answers_nothing": (
        lambda t: null_sweep(t, "--address", "127.0.0.1:1"),
        "no Ray head answers there",
    ),
    "address_not_host_port": (
        lambda t: null_sweep(t, "--address", "nowhere"),
        "expected HOST:PORT",
    ),
    "address_port_out_of_range": (  # issue 32: was "connection refused"
        lambda t: null_sweep(t, "--address", "127.0.0.1:99999"),
        "--address 127.0.0.1:99999: a port is 1 to 65535",
    ),
    "yaml_is_a_directory": (lambda t: ["sweep", str(t), "--dry-run"], "is a directory"),
    # issue 32: click's usage errors were three lines
    "unknown_option": (
        lambda t: ["sweep", QUICK, "--bogus"],
        "sedsweep sweep: No such option: --bogus (see `sedsweep sweep --help`)",
    ),
    "unknown_command": (lambda t: ["swep", QUICK], "No such command 'swep'. Did you mean 'sweep'?"),
    "yaml_is_a_fifo": (
        lambda t: (os.mkfifo(t / "f.yaml"), ["sweep", str(t / "f.yaml")])[1],
        "f.yaml: YAML file: not a regular file",
    ),
    "yaml_missing": (lambda t: ["sweep", str(t / "none.yaml"), "--dry-run"], "file not found"),
    # issue 32: a data path in a symlink loop was "directory not found"
    "data_path_symlink_loop": (
        lambda t: (
            os.symlink(t / "loop", t / "loop"),
            ["train", "--method", "null", "--data", str(t / "loop"), "--dry-run"],
        )[1],
        "loop: corpus directory: a loop of symbolic links",
    ),
    "yaml_symlink_loop": (
        lambda t: (os.symlink(t / "l.yaml", t / "l.yaml"), ["sweep", str(t / "l.yaml")])[1],
        "l.yaml: YAML file: a loop of symbolic links",
    ),
    "set_a_space_entry": (
        lambda t: ["sweep", QUICK, "--dry-run", "--set", "space.optim.lr.low=5"],
        "--set space.optim.lr.low",
    ),
    "set_unknown_key": (
        lambda t: ["sweep", QUICK, "--dry-run", "--set", "fixed.nope=1"],
        "--set fixed.nope: unknown key",
    ),
    "scale_unknown": (lambda t: ["sweep", QUICK, "--dry-run", "--scale", "huge"], "--scale"),
    "table_without_store": (
        lambda t: ["table", "quickstart", "--workdir", str(t / "none")],
        "no MLflow store here",
    ),
    "claims_without_store": (
        lambda t: ["claims", "quickstart", "--workdir", str(t / "none")],
        "no MLflow store here",
    ),
    "best_without_store": (
        lambda t: ["best", "quickstart", "--workdir", str(t / "none"), "--out", str(t / "b.yaml")],
        "no MLflow store here",
    ),
    "dashboard_without_store": (
        lambda t: ["dashboard", "quickstart", "--workdir", str(t / "none"), "--out", str(t / "d")],
        "no MLflow store here",
    ),
    "table_bogus_tracking_uri": (
        lambda t: ["table", "quickstart", "--tracking-uri", "bogus://x"],
        "MLflow tracking store not usable",
    ),
    "train_unknown_method": (
        lambda t: ["train", "--method", "nope", "--workdir", str(t / "w")],
        "unknown method 'nope'",
    ),
    "train_config_missing": (
        lambda t: ["train", "--config", str(t / "none.yaml"), "--workdir", str(t / "w")],
        "file not found",
    ),
    "resume_nothing": (lambda t: ["resume", str(t)], "no sweep found"),
    "sync_nothing": (lambda t: ["sync", str(t)], "no sweep found"),
    "data_info_missing": (lambda t: ["data", "info", str(t / "none")], "none"),
    "data_make_where_nothing_can_be_written": (
        lambda t: ["data", "make", "lowres", "--out", "/proc/x"],
        "/proc/x: cannot write there",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI))
def test_command_line_census(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, needle = CLI[case]
    args = build(tmp_path)
    one_line_exit_2(args, tmp_path, capsys, needle)


def test_the_census_is_at_least_sixty_cases():
    assert len(BAD) + len(BAD_INPUTS) + len(CLI) >= 60
