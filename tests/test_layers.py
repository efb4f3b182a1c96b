"""Architecture rules that must hold as the code grows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sedsweep.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_methods_never_import_ray_or_mlflow(name):
    module = REGISTRY[name].partition(":")[0]
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'optuna'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


def test_platform_is_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()
