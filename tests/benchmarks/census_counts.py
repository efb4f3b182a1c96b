"""Count how a source tree answers the bad-input census (tests/chaos/test_census.py).

Every case of the census (search-space files, corpora, command lines) is run through the CLI
of the tree given with `--src` (a `platform/` directory; default: this checkout's) in a fresh
interpreter, in a temporary directory, and classified:

    C  clear: exit 2, one line `sedsweep: error: ...` carrying the expected words, and
       nothing written where the command pointed
    U  unclear: exit 2 in one line, but misleading (the expected words missing) or
       something written; or another non-zero exit without a traceback
    T  traceback
    S  silently accepted: exit 0
    L  long: exit 2, but more than one line of its own on stderr (MLflow's INFO lines when
       it creates a store are not counted)
    H  hung: still running after --timeout seconds (killed)

Usage, comparing the code before issue 15 with this checkout:

    git archive 6fe07fa platform | tar -x -C /tmp/before
    .venv/bin/python tests/benchmarks/census_counts.py --src /tmp/before/platform
    .venv/bin/python tests/benchmarks/census_counts.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.chaos.test_census import CLI, snapshot  # noqa: E402
from tests.conftest import write_hand_corpus  # noqa: E402
from tests.test_corpus import BAD_INPUTS  # noqa: E402
from tests.test_sweep_spec import BAD, GOOD  # noqa: E402

RUN = "import sys; sys.path.insert(0, {src!r}); from sedsweep.cli import main; sys.exit(main())"
NOISE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO ")  # MLflow creating its tables


def classify(args: list[str], root: Path, needle: str, src: str, timeout: float) -> str:
    before = snapshot(root)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RUN.format(src=src), *args], capture_output=True, text=True,
            timeout=timeout, cwd=root, env=env, start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "H"
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip() and not NOISE.match(x)]
    if "Traceback" in proc.stdout + proc.stderr:
        return "T"
    if proc.returncode == 0:
        return "S"
    if proc.returncode != 2:
        return "U"
    if len(lines) != 1:
        return "L"
    clear = lines[0].startswith("sedsweep: error: ") and needle in lines[0]
    return "C" if clear and snapshot(root) == before else "U"


def cases(tmp: Path) -> list[tuple[str, list[str], Path, str]]:
    """(name, argv, directory that must stay unchanged, expected words) for every case."""
    out = []
    for name, (change, needle) in sorted(BAD.items()):
        root = tmp / f"spec-{name}"
        root.mkdir()
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**GOOD, **change}))
        out.append((f"spec:{name}", ["sweep", str(path), "--dry-run"], root, needle))
    for name, (edit, needles) in sorted(BAD_INPUTS.items()):
        root = write_hand_corpus(tmp, f"corpus-{name}")
        edit(root)
        out.append((f"corpus:{name}", ["data", "info", str(root)], root, needles[-1]))
    for name, (build, needle) in sorted(CLI.items()):
        root = tmp / f"cli-{name}"
        root.mkdir()
        out.append((f"cli:{name}", build(root), root, needle))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(ROOT / "platform"), help="a platform/ directory")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true", help="print every case's class")
    args = parser.parse_args()
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv, root, needle in cases(Path(tmp)):
            kind = classify(argv, root, needle, args.src, args.timeout)
            counts[kind] += 1
            if args.verbose or kind != "C":
                print(f"{kind} {name}", flush=True)
    total = sum(counts.values())
    print(f"{args.src}: {total} cases: " + " ".join(f"{k}={counts[k]}" for k in "CUTSLH"))


if __name__ == "__main__":
    main()
