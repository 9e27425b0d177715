"""Serving the page, onnxruntime-web and one stream-mode model on a local HTTP(S) server.

Every response carries Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
require-corp: with both the page is cross-origin isolated, which is what gives it SharedArrayBuffer and so
multi-threaded WASM. Only known files are served: the page (`static/`), the onnxruntime-web files it imports
(from `node_modules`, installed by scripts/install.sh at the version pinned in package.json), the model and
its sidecar, and any folders a caller mounts (the tests' frames).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
ORT_PACKAGE = WEB_DIR / "node_modules" / "onnxruntime-web"
# What the page imports: the WASM build (CPU) and the WebGPU build, each with its loader and binary.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".json": "application/json", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
                 ".png": "image/png", ".jpg": "image/jpeg", ".mp4": "video/mp4", ".webm": "video/webm"}
SIDECAR_URL = "/model/sidecar.json"
EXPORT_HINT = "python -m xvit_edge.export --target onnx --mode stream"


class WebError(Exception):
    """A problem to report in one line (the CLI exits with code 2)."""


@dataclass(frozen=True)
class ServedModel:
    """A stream-mode ONNX artifact and its sidecar, checked against each other."""

    artifact: Path
    sidecar: Path
    meta: dict[str, Any]  # the sidecar as written (plain JSON)


def pinned_ort_version() -> str:
    """The onnxruntime-web version package.json pins."""
    return json.loads((WEB_DIR / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def check_runtime() -> str:
    """The installed onnxruntime-web version, once its files are there and it is the pinned one."""
    pinned, hint = pinned_ort_version(), "run scripts/install.sh (or: cd apps/web && npm ci)"
    try:
        installed = json.loads((ORT_PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError) as e:
        raise WebError(f"onnxruntime-web is not installed in {ORT_PACKAGE.parent}; {hint}") from e
    if installed != pinned:
        raise WebError(f"onnxruntime-web {installed} is installed, package.json pins {pinned}; {hint}")
    missing = [f for f in ORT_FILES if not (ORT_PACKAGE / "dist" / f).is_file()]
    if missing:
        raise WebError(f"onnxruntime-web {installed} lacks {', '.join(missing)}; {hint}")
    return installed


def check_model(path: str | os.PathLike) -> ServedModel:
    """The stream-mode ONNX artifact at `path` (or its sidecar `.json`), checked as the streaming runtime
    checks it (sidecar, digest, file kind, I/O shapes); a WebError naming the problem otherwise."""
    from xvit_edge.export.sidecar import read_sidecar
    from xvit_edge.streaming.backends import ModelLoadError, load_model, sidecar_path

    path = Path(path)
    if path.suffix == ".json":  # the sidecar itself: the artifact it names sits beside it
        if not path.is_file():
            raise WebError(f"{path}: no such file")
        try:
            path = path.with_name(read_sidecar(path)["artifact"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WebError(f"{path}: not a readable sidecar ({e})") from e
    if path.suffix != ".onnx":
        raise WebError(f"{path}: the page runs ONNX models; give a stream-mode .onnx from {EXPORT_HINT}")
    if not path.is_file():
        raise WebError(f"{path}: no such file")
    side = sidecar_path(path)
    if not side.is_file():
        raise WebError(f"{path}: no sidecar {side.name} beside it; the page reads the labels, preprocessing and "
                       f"state names from the JSON that {EXPORT_HINT} writes with the artifact")
    try:
        meta = read_sidecar(side)
    except (OSError, ValueError) as e:
        raise WebError(str(e)) from e
    if meta["mode"] != "stream":
        raise WebError(f"{path}: a {meta['mode']}-mode export (T frames per call); the page runs the incremental "
                       f"step, one frame per call: {EXPORT_HINT}")
    if not isinstance(meta.get("state"), dict) or not meta["state"].get("inputs"):
        raise WebError(f"{side}: no state record (which inputs carry the state); export the model again")
    try:
        load_model(path, threads=1)  # digest, file kind and the graph's shapes against the sidecar
    except ModelLoadError as e:
        raise WebError(str(e)) from e
    return ServedModel(path, side, json.loads(side.read_text()))


def _inside(root: Path, rel: str) -> Path | None:
    """`root/rel` if it is a file inside `root` (no `..`, no links out), else None."""
    try:
        path = (root / rel).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path if path.is_file() else None


class _Handler(BaseHTTPRequestHandler):
    server: "WebServer"
    protocol_version = "HTTP/1.1"

    def _resolve(self) -> Path | None:
        route = unquote(urlsplit(self.path).path)
        files = self.server.files
        if route in files:
            return files[route]
        if route.startswith("/ort/") and route[5:] in ORT_FILES:
            return ORT_PACKAGE / "dist" / route[5:]
        for prefix, folder in self.server.mounts.items():
            if route.startswith(f"/{prefix}/"):
                return _inside(folder, route[len(prefix) + 2:])
        return _inside(STATIC_DIR, route.lstrip("/") or "index.html")

    def _send(self, head_only: bool) -> None:
        path = self._resolve()
        if path is None or not path.is_file():
            body = b"not found\n"
            self.send_response(HTTPStatus.NOT_FOUND)
            self._headers("text/plain; charset=utf-8", len(body))
            if not head_only:
                self.wfile.write(body)
            return
        self.send_response(HTTPStatus.OK)
        self._headers(CONTENT_TYPES.get(path.suffix, "application/octet-stream"), path.stat().st_size)
        if not head_only:
            with path.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def _headers(self, content_type: str, length: int) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        # A model exported again under the same name must not come from the browser's cache.
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.address_string(), format % args)


class WebServer(ThreadingHTTPServer):
    """The page's server; `files` maps exact URL paths to files, `mounts` URL prefixes to folders."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], files: Mapping[str, Path], mounts: Mapping[str, Path]) -> None:
        self.files, self.mounts = dict(files), {k.strip("/"): Path(v) for k, v in mounts.items()}
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> threading.Thread:
        """Serve on a daemon thread (tests, benchmarks); `shutdown()` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="apps.web", daemon=True)
        thread.start()
        return thread


def make_server(model: ServedModel, host: str = "127.0.0.1", port: int = 8000,
                mounts: Mapping[str, Path] | None = None, tls: ssl.SSLContext | None = None) -> WebServer:
    """A server for the page and `model` (its sidecar at /model/sidecar.json, the artifact beside it under the
    name the sidecar gives); `port` 0 takes a free one. An OSError if the address cannot be bound."""
    files = {SIDECAR_URL: model.sidecar, f"/model/{model.meta['artifact']}": model.artifact}
    server = WebServer((host, port), files, mounts or {})
    if tls is not None:
        # The handshake happens in each request's thread, so a client that connects and stays silent does not
        # hold up the accepting loop.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def tls_context(cert: str | os.PathLike, key: str | os.PathLike) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate and key; a WebError if they cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise WebError(f"cannot load the certificate {cert} with the key {key}: {e}") from e
    return context
