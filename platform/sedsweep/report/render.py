"""Static sweep dashboard: one self-contained `index.html` (CSS, JS and data inlined) + figures.

The page template (`sweep.html`, `sweep.css`, `sweep.js`) is package data in
`sedsweep/report/templates/`, so it travels with every install (a wheel, the Docker image);
the environment variable SEDSWEEP_DASHBOARDS names a folder of one's own instead. The JS draws
every plot as inline SVG at load time from the payload embedded in
`<script type="application/json" id="sweep-data">`; the page never fetches anything.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

from sedsweep.errors import UserError
from sedsweep.fsio import atomic_dir, atomic_file, write_json

TEMPLATE_FILES = ("sweep.html", "sweep.css", "sweep.js")
_PLACEHOLDER = re.compile(r"\{\{(TITLE|CSS|JS|DATA)\}\}")
_FIGURE_NAME = re.compile(r"^figures/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def dashboards_dir() -> Path | Traversable:
    """Folder holding the dashboard template: $SEDSWEEP_DASHBOARDS, else the package's own."""
    env = os.environ.get("SEDSWEEP_DASHBOARDS")
    if env:
        return Path(env).expanduser()
    return resources.files("sedsweep.report") / "templates"


def _read_template(name: str) -> str:
    path = dashboards_dir() / name
    if not path.is_file():
        raise UserError(
            "dashboard template not found (set SEDSWEEP_DASHBOARDS to the folder holding "
            + ", ".join(TEMPLATE_FILES)
            + ")",
            where=path,
        )
    return path.read_text(encoding="utf-8")


def _jsonable(obj: Any, where: str = "payload") -> Any:
    """A copy of `obj` with plain JSON types only; non-finite floats become None (JSON null)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "shape", None) == ():
        return _jsonable(item(), where)
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serializable")


def embed_json(obj: Any) -> str:
    """JSON text safe inside a `<script>` element: no `<`, `>` or `&` can appear literally.

    `</script>` or `<!--` inside a string would otherwise end or corrupt the script block; the
    `\\u003c` escapes decode back to the same string with JSON.parse / json.loads.
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _check_figures(payload: dict[str, Any], figures: Mapping[str, Path]) -> dict[str, Path]:
    """Validate figure names (relative `figures/...`, no `..`) and sources; all must be present."""
    checked: dict[str, Path] = {}
    for name, src in figures.items():
        pure = PurePosixPath(name)
        if not _FIGURE_NAME.match(name) or ".." in pure.parts:
            raise UserError(
                "figure name must be a relative path 'figures/NAME' (letters, digits, . _ -)",
                where=name,
            )
        src = Path(src)
        if not src.is_file():
            raise UserError(f"figure file for {name} not found", where=src)
        checked[name] = src
    for i, fig in enumerate(payload.get("figures") or []):
        path = fig.get("path") if isinstance(fig, Mapping) else None
        if not isinstance(path, str) or path not in checked:
            raise UserError(
                f"payload figure {i} ({path!r}) has no file in `figures` "
                f"(given: {sorted(checked) or 'none'})"
            )
    return checked


def build_html(payload: dict[str, Any]) -> str:
    """The page text: template with CSS, JS and the embedded payload (already JSON-safe)."""
    template = _read_template("sweep.html")
    css = _read_template("sweep.css")
    js = _read_template("sweep.js")
    where = dashboards_dir()
    if re.search(r"</script", js, re.IGNORECASE):
        raise UserError("sweep.js must not contain '</script' (it is inlined)", where=where)
    if re.search(r"</style", css, re.IGNORECASE):
        raise UserError("sweep.css must not contain '</style' (it is inlined)", where=where)
    found = set(_PLACEHOLDER.findall(template))
    missing = {"TITLE", "CSS", "JS", "DATA"} - found
    if missing:
        raise UserError(
            "template lacks placeholder(s) " + ", ".join(f"{{{{{m}}}}}" for m in sorted(missing)),
            where=where / "sweep.html",
        )
    sweep = payload.get("sweep") or {}
    name = sweep.get("name") if isinstance(sweep, Mapping) else None
    values = {
        "TITLE": html.escape(f"{name or 'sweep'} — sweep dashboard"),
        "CSS": css,
        "JS": js,
        "DATA": embed_json(payload),
    }
    # One pass: text substituted in is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_dashboard(
    payload: dict[str, Any],
    out_dir: Path,
    figures: dict[str, Path] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the dashboard to `out_dir` atomically and return the path of `out_dir/index.html`.

    `out_dir` gets `index.html` (self-contained), `payload.json` and `figures/` (copies of
    `figures`, keyed by the relative names used in payload["figures"][i]["path"]). The directory is
    built under a temporary sibling name and renamed at the end, so a failure leaves nothing
    half-written; an existing non-empty `out_dir` is refused unless `overwrite`.
    Non-finite floats in the payload are written as null.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    out_dir = Path(out_dir)
    clean = _jsonable(payload)
    figs = _check_figures(clean, figures or {})
    page = build_html(clean)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for name, src in figs.items():
            dest = tmp.joinpath(*PurePosixPath(name).parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        write_json(tmp / "payload.json", clean)
        with atomic_file(tmp / "index.html", "w", encoding="utf-8") as handle:
            handle.write(page)
    return out_dir / "index.html"
