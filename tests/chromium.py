"""Headless Chromium for tests: render a local page, dump its DOM, screenshot it, trap requests.

Every run goes through a local "proxy" (`RequestTrap`, a TCP listener on 127.0.0.1) passed with
`--proxy-server` and `--proxy-bypass-list=<-loopback>`, so any http(s) request the page makes
(even to loopback) reaches the trap instead of the network; it is answered 403 and its request
line ("GET http://host/path HTTP/1.1", "CONNECT host:443 HTTP/1.1") is recorded.

Chromium itself (not the page) still phones a few Google service endpoints at start-up even with
every "quiet" flag (Chromium 156: the Gaia ListAccounts check of the account reconcilor on
accounts.google.com, an on-demand component-updater query on update.googleapis.com). Those go to
the trap too, so nothing leaves the machine; `render` reports them separately
(`Rendered.browser_requests`) and returns only the others as the page's requests.
`BROWSER_SERVICE_HOSTS` lists them: hosts no dashboard has a reason to contact.

Use `browser_or_skip()` in tests: it skips when no Chromium is installed, or fails when the
environment sets SEDSWEEP_REQUIRE_BROWSER=1 (CI). SEDSWEEP_CHROMIUM names a binary explicitly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Debian's /usr/bin/chromium is a shell wrapper that adds flags (remote extensions...): skip it.
DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")
BROWSER_SERVICE_HOSTS = frozenset(
    {
        "accounts.google.com",
        "clients1.google.com",
        "clients2.google.com",
        "update.googleapis.com",
        "safebrowsing.googleapis.com",
        "optimizationguide-pa.googleapis.com",
        "content-autofill.googleapis.com",
        "redirector.gvt1.com",
        "edgedl.me.gvt1.com",
    }
)
QUIET_FEATURES = (
    "NetworkTimeServiceQuerying",
    "OptimizationHints",
    "OptimizationGuideModelDownloading",
    "Translate",
    "MediaRouter",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
)
INSTALL_HINT = "apt-get install -y --no-install-recommends chromium"
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($SEDSWEEP_CHROMIUM first, then PATH), or None."""
    env = os.environ.get("SEDSWEEP_CHROMIUM")
    if env:
        found = shutil.which(env)
        return found if found else None
    if DEBIAN_BINARY.is_file() and os.access(DEBIAN_BINARY, os.X_OK):
        return str(DEBIAN_BINARY)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def request_host(line: str) -> str:
    """Host of a proxy request line: 'GET http://h:80/p HTTP/1.1' or 'CONNECT h:443 HTTP/1.1'."""
    parts = line.split()
    if len(parts) < 2:
        return ""
    target = parts[1]
    if parts[0].upper() != "CONNECT":
        target = urlsplit(target).netloc
    host = target.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.split(":", 1)[0].lower()


def is_browser_service(line: str) -> bool:
    """True for Chromium's own start-up calls to Google services (see BROWSER_SERVICE_HOSTS)."""
    return request_host(line) in BROWSER_SERVICE_HOSTS


def browser_required() -> bool:
    """True when the environment demands a real browser (CI sets SEDSWEEP_REQUIRE_BROWSER=1)."""
    return os.environ.get("SEDSWEEP_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes"}


def browser_or_skip() -> str:
    """The Chromium path; else skip the test, or fail it when SEDSWEEP_REQUIRE_BROWSER=1."""
    import pytest

    path = find_chromium()
    if path:
        return path
    tried = os.environ.get("SEDSWEEP_CHROMIUM") or ", ".join((str(DEBIAN_BINARY), *CANDIDATES))
    reason = f"headless Chromium not found (tried {tried}; install: {INSTALL_HINT})"
    if browser_required():
        pytest.fail(f"SEDSWEEP_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pragma: no cover


class _TrapHandler(socketserver.StreamRequestHandler):
    timeout = 5

    def handle(self) -> None:
        try:
            line = self.rfile.readline(65536).decode("latin-1").strip()
            if not line:
                return
            self.server.record(line)  # type: ignore[attr-defined]
            while True:  # drain the headers
                header = self.rfile.readline(65536)
                if not header or header in (b"\r\n", b"\n"):
                    break
            self.wfile.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        except OSError:
            pass


class _TrapServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrapHandler)
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def record(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)


class RequestTrap:
    """A local listener that records every request sent to it (use as a context manager)."""

    def __init__(self) -> None:
        self._server = _TrapServer()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def requests(self) -> list[str]:
        with self._server._lock:
            return list(self._server.lines)

    def __enter__(self) -> RequestTrap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def chromium_args(
    user_data_dir: Path, proxy_port: int, budget_ms: int, allow: str | None = None
) -> list[str]:
    """Flags for an isolated, quiet, offline-by-proxy headless run; `allow` ("host:port", a
    local server under test) is reached directly, everything else goes to the trap."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-pings",
        "--mute-audio",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--metrics-recording-only",
        "--password-store=basic",
        "--disable-features=" + ",".join(QUIET_FEATURES),
        f"--user-data-dir={user_data_dir}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>" + (f";{allow}" if allow else ""),
        f"--virtual-time-budget={budget_ms}",
    ]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run Chromium in its own process group; on timeout kill that group (only ours)."""
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(
            f"chromium timed out after {timeout:.0f} s: {' '.join(cmd[-2:])}\n{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def _profile_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sedsweep-chromium-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Rendered(NamedTuple):
    """What `render` returns: unpacks as (dom, requests)."""

    dom: str
    requests: list[str]  # request lines the page (or anything but Chromium's services) sent
    browser_requests: list[str]  # Chromium's own start-up calls (BROWSER_SERVICE_HOSTS)


def render(
    html_path: str | Path,
    screenshot_path: str | Path | None = None,
    timeout: float = 90.0,
    *,
    chromium: str | None = None,
    budget_ms: int = 5000,
    window_size: tuple[int, int] = (1400, 3000),
    allow: str | None = None,
) -> Rendered:
    """Load `html_path` in headless Chromium; return (dumped DOM, request lines seen by the trap).

    `html_path` may be an http URL of a local server named by `allow` ("127.0.0.1:PORT"),
    which the page then reaches directly (the MLflow UI under test).

    The DOM is dumped after `budget_ms` of virtual time (scripts have run, images loaded). With
    `screenshot_path`, a second run writes a PNG of `window_size`. Both runs go through the same
    request trap; `requests` holds every request either run tried to send, except Chromium's own
    calls to its service hosts (in `browser_requests`).
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise RuntimeError(f"headless Chromium not found (install: {INSTALL_HINT})")
    url = (
        str(html_path) if str(html_path).startswith("http") else Path(html_path).resolve().as_uri()
    )
    with RequestTrap() as trap:
        with _profile_dir() as profile:
            cmd = [exe, *chromium_args(profile, trap.port, budget_ms, allow), "--dump-dom", url]
            done = _run(cmd, timeout)
        if done.returncode != 0 or "<html" not in done.stdout.lower():
            raise RuntimeError(
                f"chromium --dump-dom failed (exit {done.returncode}): {done.stderr[-3000:]}"
            )
        dom = done.stdout
        if screenshot_path is not None:
            shot = Path(screenshot_path).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            with _profile_dir() as profile:
                cmd = [
                    exe,
                    *chromium_args(profile, trap.port, budget_ms, allow),
                    f"--screenshot={shot}",
                    f"--window-size={window_size[0]},{window_size[1]}",
                    url,
                ]
                done = _run(cmd, timeout)
            if done.returncode != 0 or not shot.is_file():
                raise RuntimeError(
                    f"chromium --screenshot failed (exit {done.returncode}): {done.stderr[-3000:]}"
                )
        lines = trap.requests
    return Rendered(
        dom,
        [line for line in lines if not is_browser_service(line)],
        [line for line in lines if is_browser_service(line)],
    )


# ---------------------------------------------------------------- a tiny DOM for assertions


class Node:
    """An element of a parsed page: tag, attrs, children; `find_all` / `find` / `text`."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None = None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def iter(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(
        self, tag: str | None = None, class_: str | None = None, **attrs: str
    ) -> list[Node]:
        """Descendants with this tag, class and attributes (`data_plot=` means `data-plot`)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        out = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            if class_ is not None and class_ not in node.classes:
                continue
            if all(node.attrs.get(k) == v for k, v in wanted.items()):
                out.append(node)
        return out

    def find(self, tag: str | None = None, class_: str | None = None, **attrs: str) -> Node | None:
        found = self.find_all(tag, class_, **attrs)
        return found[0] if found else None

    def by_id(self, ident: str) -> Node | None:
        return self.find(id=ident)

    def text(self) -> str:
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text())
        return "".join(parts)

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>"


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID_TAGS:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse_dom(html_text: str) -> Node:
    """Parse serialized HTML (e.g. Chromium's --dump-dom output) into a `Node` tree."""
    builder = _TreeBuilder()
    builder.feed(html_text)
    builder.close()
    return builder.root
