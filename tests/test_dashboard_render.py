"""Static sweep dashboard: render_dashboard unit tests, and the page drawn by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sedsweep.errors import UserError
from sedsweep.report.render import dashboards_dir, embed_json, render_dashboard

from .chromium import (
    browser_or_skip,
    is_browser_service,
    parse_dom,
    render,
    request_host,
)

BROWSER_TIMEOUT = 120.0
XSS_NAME = '<img src=x onerror="document.body.dataset.pwned=1">'
SCRIPT_BREAK = "</script><script>document.body.dataset.pwned=2</script>"


# ------------------------------------------------------------------------------ payloads


def make_payload(mode: str = "max") -> dict[str, Any]:
    """A dozen trials, mixed statuses, three params (one categorical), curves, table, figure."""
    rng = np.random.default_rng(7)
    statuses = ["completed"] * 8 + ["pruned"] * 2 + ["failed", "running"]
    poolings = ["attention", "max", "mean"]
    trials = []
    for i, status in enumerate(statuses):
        lr = float(10 ** rng.uniform(-4.5, -2))
        hidden = int(rng.choice([32, 64, 128, 256]))
        pooling = poolings[i % 3]
        objective: float | None
        if status == "completed":
            objective = [0.55, 0.48, 0.62, 0.70, 0.44, 0.66, 0.74, 0.51][i]
        elif status == "pruned":
            objective = round(0.2 + 0.03 * i, 4)
        else:
            objective = None
        metrics = {}
        if objective is not None:
            metrics = {
                "val/f1": objective,
                "val/loss": round(1.0 - objective, 4),
                "test/f1": round(objective - 0.02, 4),
            }
        trials.append(
            {
                "run_id": f"run{i:02d}abcdef",
                "name": f"trial-{i}",
                "number": i,
                "status": status,
                "params": {"lr": lr, "hidden": hidden, "pooling": pooling},
                "objective": objective,
                "metrics": metrics,
                "url": None
                if i == 3
                else f"http://mlflow.local:5000/#/experiments/1/runs/run{i:02d}",
                "start_time": 1_760_000_000_000 + i * 60_000,
                "epochs": 10 if status == "completed" else 3,
            }
        )
    done = [t for t in trials if t["status"] == "completed"]
    pick = max if mode == "max" else min
    best = pick(done, key=lambda t: t["objective"])
    top = sorted(done, key=lambda t: t["objective"], reverse=(mode == "max"))[:3]
    curves = [
        {
            "run_id": t["run_id"],
            "label": t["name"],
            "metric": "val/f1",
            "points": [[s, round(t["objective"] * (1 - 0.5 * 0.7**s), 4)] for s in range(1, 11)],
        }
        for t in top
    ]
    table = (
        '<table class="cmp"><thead><tr><th>pooling</th><th>val/f1</th></tr></thead>'
        '<tbody><tr><td id="cmp-cell">attention</td><td>0.71 ± 0.02</td></tr>'
        "<tr><td>max</td><td>0.66 ± 0.03</td></tr></tbody></table>"
    )
    return {
        "sweep": {
            "name": "whenwho-quick",
            "method": "whenwho",
            "parent_run_id": "parent0123",
            "experiment_id": "1",
            "tracking_uri": "sqlite:///sedsweep-runs/mlflow.db",
            "mlflow_url": "http://mlflow.local:5000",
            "objective": {"metric": "val/f1", "mode": mode},
            "started": "2026-01-02T10:00:00+00:00",
            "status": "FINISHED",
            "generated": "2026-01-02T11:00:00+00:00",
        },
        "counts": {"completed": 8, "pruned": 2, "failed": 1, "running": 1},
        "trials": trials,
        "searched": ["lr", "hidden", "pooling"],
        "curves": curves,
        "tables": [{"title": "Pooling comparison", "html": table}],
        "importance": {
            "evaluator": "FanovaImportanceEvaluator",
            "target": "val/f1",
            "values": [["lr", 0.61], ["pooling", 0.27], ["hidden", 0.12]],
        },
        "best": {
            "run_id": best["run_id"],
            "name": best["name"],
            "objective": best["objective"],
            "params": best["params"],
            "url": best["url"],
        },
        "figures": [{"title": "Clip 0: frame-level detection", "path": "figures/clip_0.png"}],
        "notes": ["importance computed on 8 completed trials"],
    }


def empty_payload() -> dict[str, Any]:
    return {
        "sweep": {
            "name": "nothing-yet",
            "method": "staged",
            "parent_run_id": "p0",
            "experiment_id": "0",
            "tracking_uri": "file:///tmp/mlruns",
            "mlflow_url": None,
            "objective": {"metric": "val/mAP", "mode": "min"},
            "started": "2026-01-02T10:00:00+00:00",
            "status": "RUNNING",
            "generated": "2026-01-02T10:00:01+00:00",
        },
        "counts": {"completed": 0, "pruned": 0, "failed": 0, "running": 0},
        "trials": [],
        "searched": [],
        "curves": [],
        "tables": [],
        "importance": None,
        "best": None,
        "figures": [],
        "notes": ["importance not computed: fewer than 2 completed trials"],
    }


def expected_order(payload: dict[str, Any]) -> list[str]:
    """Run ids in leaderboard order: objective (by mode) first, null objectives last."""
    sign = -1 if payload["sweep"]["objective"]["mode"] == "max" else 1
    status_rank = {"completed": 0, "pruned": 1, "failed": 2, "running": 3}
    trials = payload["trials"]
    scored = sorted(
        (t for t in trials if t["objective"] is not None),
        key=lambda t: (sign * t["objective"], status_rank[t["status"]], t["number"]),
    )
    unscored = sorted(
        (t for t in trials if t["objective"] is None),
        key=lambda t: (status_rank[t["status"]], t["number"]),
    )
    return [t["run_id"] for t in scored + unscored]


@pytest.fixture
def figure_png(tmp_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(0, 10, 200)
    fig, ax = plt.subplots(figsize=(6, 2.5), dpi=80)
    ax.plot(t, np.clip(np.sin(t), 0, None), label="p(event)")
    ax.axhline(0.5, ls="--", color="grey")
    ax.set_xlabel("time (s)")
    ax.legend()
    path = tmp_path / "src" / "clip_0.png"
    path.parent.mkdir()
    fig.savefig(path)
    plt.close(fig)
    return path


def embedded(index_html: str) -> Any:
    m = re.search(
        r'<script type="application/json" id="sweep-data">(.*?)</script>', index_html, re.S
    )
    assert m, "no sweep-data block"
    return json.loads(m.group(1))


# ------------------------------------------------------------------- render_dashboard units


def test_payload_embedded_and_recoverable(tmp_path: Path, figure_png: Path) -> None:
    payload = make_payload()
    out = tmp_path / "dash"
    index = render_dashboard(payload, out, {"figures/clip_0.png": figure_png})
    assert index == out / "index.html"
    text = index.read_text(encoding="utf-8")
    assert embedded(text) == payload
    assert json.loads((out / "payload.json").read_text()) == payload
    assert (out / "figures" / "clip_0.png").read_bytes() == figure_png.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["figures", "index.html", "payload.json"]
    # self-contained: CSS and JS inlined, no external references, no placeholders left
    assert not re.search(r"\{\{(TITLE|CSS|JS|DATA)\}\}", text)
    assert "document.body.dataset.rendered" in text and "--completed" in text
    assert not re.search(r"<(script|link)[^>]+(src|href)=", text)
    assert "<title>whenwho-quick — sweep dashboard</title>" in text


def test_script_close_in_strings_is_escaped(tmp_path: Path) -> None:
    payload = empty_payload()
    payload["sweep"]["name"] = SCRIPT_BREAK
    payload["notes"] = ["<!-- comment", "a & b > c", "line\u2028sep"]
    text = render_dashboard(payload, tmp_path / "d").read_text(encoding="utf-8")
    # the only </script> tags are the two real ones (data block, inlined JS)
    assert len(re.findall(r"</script", text, re.I)) == 2
    assert "<!--" not in text.split('id="sweep-data">', 1)[1].split("</script>", 1)[0]
    assert embedded(text) == payload
    # the title is HTML-escaped too
    assert "<title>&lt;/script&gt;" in text
    assert "\\u003c/script\\u003e" in embed_json(SCRIPT_BREAK)


def test_non_finite_numbers_become_null(tmp_path: Path) -> None:
    payload = make_payload()
    payload["trials"][0]["objective"] = float("nan")
    payload["trials"][1]["metrics"]["val/f1"] = float("inf")
    payload["trials"][2]["params"]["hidden"] = np.int64(64)
    payload["trials"][2]["params"]["lr"] = np.float32(0.5)
    out = tmp_path / "d"
    render_dashboard(payload, out, {"figures/clip_0.png": _tiny_png(tmp_path)})
    data = json.loads((out / "payload.json").read_text())
    assert data["trials"][0]["objective"] is None
    assert data["trials"][1]["metrics"]["val/f1"] is None
    assert data["trials"][2]["params"] == {"lr": 0.5, "hidden": 64, "pooling": "mean"}
    assert embedded((out / "index.html").read_text()) == data


def _tiny_png(tmp_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "tiny.png"
    plt.imsave(path, np.arange(16, dtype=float).reshape(4, 4))
    return path


def test_failed_render_leaves_no_output(tmp_path: Path, monkeypatch) -> None:
    parent = tmp_path / "reports"
    parent.mkdir()
    out = parent / "dash"
    payload = make_payload()
    # a figure file that does not exist
    with pytest.raises(UserError, match="figure file"):
        render_dashboard(payload, out, {"figures/clip_0.png": tmp_path / "missing.png"})
    assert list(parent.iterdir()) == []
    # a figure referenced by the payload but not given
    with pytest.raises(UserError, match="has no file"):
        render_dashboard(payload, out)
    # a value JSON cannot hold
    bad = empty_payload()
    bad["notes"] = [object()]
    with pytest.raises(TypeError, match=r"payload\['notes'\]\[0\]"):
        render_dashboard(bad, out)
    assert list(parent.iterdir()) == []
    # a failure in the middle of writing (copying a figure) removes the temporary directory
    src = _tiny_png(tmp_path)
    real_copy = shutil.copyfile

    def broken_copy(a: Any, b: Any) -> Any:
        real_copy(a, b)
        raise OSError("disk full")

    payload["figures"] = [{"title": "x", "path": "figures/clip_0.png"}]
    monkeypatch.setattr("sedsweep.report.render.shutil.copyfile", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        render_dashboard(payload, out, {"figures/clip_0.png": src})
    assert list(parent.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "dash"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(UserError, match="not empty"):
        render_dashboard(empty_payload(), out)
    assert (out / "keep.txt").read_text() == "old"
    render_dashboard(empty_payload(), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "payload.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["dash"]


def test_bad_figure_names_refused(tmp_path: Path) -> None:
    src = _tiny_png(tmp_path)
    for name in ["../evil.png", "figures/../x.png", "/abs/x.png", "clip.png", "figures/a b.png"]:
        with pytest.raises(UserError, match="figure name"):
            render_dashboard(empty_payload(), tmp_path / "d", {name: src})
    assert not (tmp_path / "d").exists()


def test_missing_template_is_a_user_error(tmp_path: Path, monkeypatch) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    monkeypatch.setenv("SEDSWEEP_DASHBOARDS", str(tpl))
    assert dashboards_dir() == tpl
    with pytest.raises(UserError) as err:
        render_dashboard(empty_payload(), tmp_path / "out")
    assert err.value.where == str(tpl / "sweep.html")
    assert "template not found" in str(err.value)
    assert not (tmp_path / "out").exists()
    # a template without its placeholders is refused as well
    shipped = Path(__file__).resolve().parents[1] / "platform/sedsweep/report/templates"
    for name in ("sweep.css", "sweep.js"):
        shutil.copy(shipped / name, tpl / name)
    (tpl / "sweep.html").write_text("<html><body>{{DATA}}</body></html>")
    with pytest.raises(UserError, match="placeholder"):
        render_dashboard(empty_payload(), tmp_path / "out")


def test_default_template_is_package_data(monkeypatch) -> None:
    monkeypatch.delenv("SEDSWEEP_DASHBOARDS", raising=False)
    folder = dashboards_dir()
    shipped = Path(__file__).resolve().parents[1] / "platform/sedsweep/report/templates"
    assert Path(str(folder)) == shipped  # an editable install reads the sources in place
    for name in ("sweep.html", "sweep.css", "sweep.js"):
        assert (folder / name).is_file()
    js = (folder / "sweep.js").read_text()
    # no network APIs, no third-party code
    for word in ("fetch(", "XMLHttpRequest", "WebSocket", "sendBeacon", "import(", "EventSource"):
        assert word not in js
    urls = set(re.findall(r"https?://[^\s\"']+", js))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never loaded


def test_request_host_parsing() -> None:
    assert request_host("GET http://example.invalid/x.png HTTP/1.1") == "example.invalid"
    assert request_host("CONNECT example.invalid:443 HTTP/1.1") == "example.invalid"
    assert request_host("GET http://[::1]:8080/a HTTP/1.1") == "::1"
    assert is_browser_service("CONNECT accounts.google.com:443 HTTP/1.1")
    assert not is_browser_service("GET http://fonts.googleapis.com/css HTTP/1.1")


# ------------------------------------------------------------------------- in the browser


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_request_trap_catches_a_leaking_page(tmp_path: Path) -> None:
    """Negative control: a page loading remote images must show up in the recorded requests."""
    exe = browser_or_skip()
    page = tmp_path / "leak.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
        '<img src="https://example.invalid/y.png"></body></html>'
    )
    dom, requests, _ = render(page, timeout=BROWSER_TIMEOUT, chromium=exe)
    assert "example.invalid" in dom
    hosts = {request_host(line) for line in requests}
    assert "example.invalid" in hosts, requests
    assert any(line.startswith("GET http://example.invalid/x.png") for line in requests)
    assert any(line.startswith("CONNECT example.invalid:443") for line in requests)


def _section(doc: Any, ident: str) -> Any:
    node = doc.find("section", id=ident)
    assert node is not None, f"section #{ident} missing"
    return node


@pytest.mark.parametrize("mode", ["max", "min"])
def test_dashboard_in_headless_chromium(tmp_path: Path, figure_png: Path, mode: str) -> None:
    exe = browser_or_skip()
    payload = make_payload(mode)
    # hostile strings must be shown as text, never run or parsed as markup
    payload["trials"][5]["name"] = XSS_NAME
    payload["trials"][6]["params"]["pooling"] = SCRIPT_BREAK
    payload["trials"][7]["url"] = "javascript:document.body.dataset.pwned=3"
    out = tmp_path / "dash"
    index = render_dashboard(payload, out, {"figures/clip_0.png": figure_png})
    shot = tmp_path / f"dashboard-{mode}.png" if mode == "max" else None
    dom, requests, _ = render(index, shot, timeout=BROWSER_TIMEOUT, chromium=exe)
    doc = parse_dom(dom)
    body = doc.find("body")
    assert body is not None
    assert body.get("data-rendered") == "true"
    assert body.get("data-render-errors") is None, doc.by_id("render-errors").text()
    assert body.get("data-pwned") is None
    assert requests == [], f"the page sent requests: {requests}"

    for ident in (
        "status",
        "best",
        "leaderboard",
        "tables",
        "parallel",
        "importance",
        "progress",
        "curves",
        "figures",
    ):
        _section(doc, ident)
    header = doc.by_id("header")
    assert header is not None
    assert "whenwho-quick" in header.text() and "whenwho" in header.text()
    assert "val/f1" in header.text() and mode in header.text()
    assert header.find("a", href="http://mlflow.local:5000/#/experiments/1/runs/parent0123")

    # status counts
    status = _section(doc, "status")
    for key, n in payload["counts"].items():
        box = status.find("div", class_="count", data_status=key)
        assert box is not None and box.find("div", class_="n").text() == str(n)
    assert len(status.find("svg", data_plot="status").find_all("rect", class_="status-seg")) == 4

    # leaderboard: one row per trial, sorted by objective respecting mode, links to MLflow
    board = _section(doc, "leaderboard")
    rows = board.find("tbody").find_all("tr")
    assert [r.get("data-run-id") for r in rows] == expected_order(payload)
    for trial in payload["trials"]:
        row = board.find("tr", data_run_id=trial["run_id"])
        assert row.get("data-status") == trial["status"]
        if trial["url"] and trial["url"].startswith("http"):
            assert row.find("a", href=trial["url"]) is not None
        else:
            assert row.find("a") is None
    assert XSS_NAME in board.text() and SCRIPT_BREAK in board.text()
    headers = [th.text() for th in board.find("thead").find_all("th")]
    for col in ("lr", "hidden", "pooling", "val/f1", "val/loss", "test/f1", "status"):
        assert any(h.startswith(col) for h in headers), (col, headers)
    best_id = payload["best"]["run_id"]
    assert rows[0].get("data-run-id") == best_id and "is-best" in rows[0].classes

    # trusted comparison table inserted as HTML
    tables = _section(doc, "tables")
    assert tables.find("table", class_="cmp") is not None
    assert tables.find("td", id="cmp-cell").text() == "attention"
    assert "Pooling comparison" in tables.text()

    # parallel coordinates: one line per completed trial, greyed lines for the others
    par = _section(doc, "parallel").find("svg", data_plot="parallel")
    assert par is not None
    lines = par.find_all("path", class_="pc-line")
    completed = [t for t in payload["trials"] if t["status"] == "completed"]
    coloured = [p for p in lines if "muted" not in p.classes]
    assert sorted(p.get("data-run-id") for p in coloured) == sorted(t["run_id"] for t in completed)
    assert all(p.get("data-status") == "completed" for p in coloured)
    muted = [p for p in lines if "muted" in p.classes and p.get("data-run-id")]
    assert len(muted) == len(payload["trials"]) - len(completed)
    axes = par.find_all("g", class_="pc-axis")
    assert [a.get("data-key") for a in axes] == ["lr", "hidden", "pooling", "objective"]
    pooling_ticks = {t.text() for t in axes[2].find_all("text")}
    assert {"attention", "max", "mean"} <= pooling_ticks
    assert len(axes[0].find_all("g", class_="tick")) >= 2  # numeric axis with tick labels

    # importance bars
    imp = _section(doc, "importance").find("svg", data_plot="importance")
    bars = imp.find_all("rect", class_="bar")
    assert [b.get("data-param") for b in bars] == ["lr", "pooling", "hidden"]
    assert "FanovaImportanceEvaluator" in imp.text()

    # progress: a point per trial with an objective, and the best-so-far step line
    prog = _section(doc, "progress").find("svg", data_plot="progress")
    scored = [t for t in payload["trials"] if t["objective"] is not None]
    points = [c for c in prog.find_all("circle") if c.get("data-run-id")]
    assert len(points) == len(scored)
    step = prog.find("path", class_="best-so-far")
    assert step is not None and step.get("d").count("H") >= 2
    assert prog.find("g", class_="x-axis").find_all("text")

    # learning curves: one SVG, a line per run, legend with labels
    curves = _section(doc, "curves").find_all("svg", data_plot="curves")
    assert len(curves) == 1
    assert len(curves[0].find_all("path", class_="curve-line")) == len(payload["curves"])
    legend = curves[0].find("g", class_="legend").text()
    for c in payload["curves"]:
        assert c["label"] in legend

    # the best trial's figure, loaded from the copied file
    img = _section(doc, "figures").find("img")
    assert img is not None and img.get("src") == "figures/clip_0.png"
    assert img.get("data-loaded") == "true"
    assert (out / "figures" / "clip_0.png").is_file()

    if shot is not None:
        assert _png_size(shot) == (1400, 3000)
        assert shot.stat().st_size > 50_000
        import matplotlib.image as mpimg

        pixels = mpimg.imread(shot)
        assert float(pixels[..., :3].std()) > 0.05  # not a blank page
        keep = os.environ.get("SEDSWEEP_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, Path(keep) / shot.name)


def test_empty_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    exe = browser_or_skip()
    payload = empty_payload()
    index = render_dashboard(payload, tmp_path / "dash")
    dom, requests, _ = render(index, timeout=BROWSER_TIMEOUT, chromium=exe)
    doc = parse_dom(dom)
    body = doc.find("body")
    assert body.get("data-rendered") == "true"
    assert body.get("data-render-errors") is None, doc.by_id("render-errors").text()
    assert requests == []
    for ident in ("leaderboard", "tables", "parallel", "progress", "curves", "figures", "best"):
        section = _section(doc, ident)
        assert section.find("p", class_="empty") is not None, ident
        assert section.find("svg") is None, ident
    assert "fewer than 2 completed trials" in _section(doc, "importance").text()
    assert "nothing-yet" in doc.by_id("header").text()
