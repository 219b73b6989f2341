"""The explorer's local web server: the page's own files and a small JSON API.

    GET  /  /index.html  /explore.js  /explore.css     the page (an allow-list: PAGE_FILES)
    GET  /api/info                                     model, vocabulary, loss curves
    POST /api/analyze    {"prompt": "..."} or {"ids": [...]}     -> the analysis
    POST /api/generate   {"ids": [...], "temperature": 0.8, "top_k": null, "top_p": null,
                          "seed": 1}                   -> {"token": id, "analysis": {...}}

Anything else is a 404; bad input (not JSON, an empty or too long prompt, characters outside
the vocabulary, a setting out of range) is a 400; every error answer is JSON
`{"error": "..."}` that the page shows. Built on the standard library's ThreadingHTTPServer;
the model itself answers one request at a time (Explorer.lock).
"""
from __future__ import annotations

import json
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .data import Explorer, PromptError
from .page import PAGE_FILES, data_json, page_html, read_page_file

__all__ = ["make_server", "MAX_BODY"]

MAX_BODY = 1 << 20   # bytes of a request body; a prompt is far smaller
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self'; frame-ancestors 'none'")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server_version = "minigpt-explore"
    explorer: Explorer            # set on the subclass make_server builds
    prompt: str | None = None
    files: dict = {}              # URL path -> (bytes, content type)

    # ---- answers ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, data_json(obj).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the terminal shows the URL and errors only

    # ---- routes -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path in self.files:
            body, content_type = self.files[path]
            if path in ("/", "/index.html"):
                body = page_html(self.prompt).encode("utf-8")
            self._send(200, body, content_type)
        elif path == "/api/info":
            self._run(lambda: self.explorer.info())
        elif path in ("/api/analyze", "/api/generate"):
            self._error(405, f"{path} takes a POST with a JSON body")
        else:
            self._not_found(path)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/api/analyze":
            self._run(lambda: self._analyze(self._body()))
        elif path == "/api/generate":
            self._run(lambda: self._generate(self._body()))
        elif path in self.files or path == "/api/info":
            self._error(405, f"{path} takes a GET")
        else:
            self._not_found(path)

    def _not_found(self, path: str) -> None:
        self._error(404, f"not found: {path[:200]}; this server has only the explorer page "
                         f"({', '.join(PAGE_FILES)}) and its API (/api/info, /api/analyze, "
                         f"/api/generate)")

    def _run(self, answer) -> None:
        try:
            self._json(200, answer())
        except _BadRequest as e:
            self._error(e.status, str(e))
        except (PromptError, ValueError) as e:
            self._error(400, str(e))
        except Exception as e:  # a bug: say so on the page and in the terminal
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error ({type(e).__name__}: {e}); see the terminal")

    def _body(self) -> dict:
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise _BadRequest(411, "the request needs a Content-Length header") from None
        if n < 0 or n > MAX_BODY:
            raise _BadRequest(413, f"the request body is {n} bytes; the most is {MAX_BODY}")
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _BadRequest(400, f"the request body is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise _BadRequest(400, f"the request body must be a JSON object, got "
                                   f"{type(body).__name__}")
        return body

    def _ids(self, body: dict) -> list[int]:
        if "ids" in body:
            return self.explorer.check_ids(body["ids"])
        if "prompt" in body:
            return self.explorer.encode_prompt(body["prompt"])
        raise _BadRequest(400, 'give {"prompt": "some text"} or {"ids": [token ids]}')

    def _analyze(self, body: dict) -> dict:
        return self.explorer.analysis(self._ids(body))

    def _generate(self, body: dict) -> dict:
        unknown = sorted(set(body) - {"ids", "prompt", "temperature", "top_k", "top_p", "seed"})
        if unknown:
            raise _BadRequest(400, f"unknown fields {unknown}; /api/generate takes ids (or "
                                   "prompt), temperature, top_k, top_p and seed")
        ids = self._ids(body)
        token = self.explorer.generate_one(
            ids, temperature=body.get("temperature", 0.8), top_k=body.get("top_k"),
            top_p=body.get("top_p"), seed=body.get("seed"))
        return {"token": token, "analysis": self.explorer.analysis(ids + [token])}


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000,
                prompt: str | None = None) -> ThreadingHTTPServer:
    """A server (not yet serving: call serve_forever) for this explorer; port 0 picks a free
    one (server.server_address has it). OSError if the address cannot be bound."""
    files = {}
    for path, (name, content_type) in PAGE_FILES.items():
        files[path] = (read_page_file(name).encode("utf-8"), content_type)
    handler = type("ExploreHandler", (_Handler,),
                   {"explorer": explorer, "prompt": prompt, "files": files})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
