"""The package as users get it: a wheel installed into a fresh venv outside the repository.

The Docker image does a plain `pip install .`, so anything the package reads at run time (the
dashboard template, the papers' results) must travel as package data, not sit in the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sedsweep import __version__

from .sweeps import grid_spec, grid_trials, log_sweep

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = (
    "sedsweep/report/templates/sweep.html",
    "sedsweep/report/templates/sweep.css",
    "sedsweep/report/templates/sweep.js",
    "sedsweep/report/paper_results.yaml",
    "sedsweep/py.typed",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (path,) = out.glob("sedsweep-*.whl")
    return path


def test_wheel_carries_its_data_files_and_version(wheel):
    assert wheel.name.startswith(f"sedsweep-{__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names
    assert not any(n.startswith(("tests/", "dashboards/", "platform/")) for n in names)


def test_dashboard_from_a_wheel_installed_outside_the_repo(wheel, tmp_path):
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    # The dependencies (not sedsweep) come from this venv: a .pth line adds its site-packages
    # after the fresh one, and .pth files inside it (the editable install's) are not read.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    workdir = tmp_path / "w"
    log_sweep(workdir, grid_spec(), grid_trials())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEDSWEEP_DASHBOARDS")}
    where = subprocess.run(
        [str(python), "-c", "import sedsweep; print(sedsweep.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(fresh), where
    out = tmp_path / "dash"
    run = subprocess.run(
        [str(fresh / "bin" / "sedsweep"), "dashboard", "grid", "--workdir", str(workdir),
         "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    page = (out / "index.html").read_text()
    shipped = ROOT / "platform" / "sedsweep" / "report" / "templates" / "sweep.js"
    assert shipped.read_text().strip()[:200] in page  # the template's JS, inlined
    assert 'id="sweep-data"' in page and "noisy_or" in page
