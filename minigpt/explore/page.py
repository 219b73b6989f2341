"""The page's files (index.html, explore.js, explore.css: package data in `web/`) and the
one-file export that inlines them with the data.

The same index.html serves both ways. It names its script and style sheet by relative URL and
carries a JSON block (`<script id="explore-data" type="application/json">`) that tells the
script what it has:

    served  {"mode": "served", "prompt": "..."}             the script asks the server's API
    static  {"mode": "static", "prompt": ..., "info": {...}, "analysis": {...}}   all inlined

`static_html` replaces the two links by the files' text and fills the JSON block, and adds a
Content-Security-Policy that forbids every fetch, so the file works (and can only work) offline.
"""
from __future__ import annotations

import json
from importlib import resources

__all__ = ["PAGE_FILES", "read_page_file", "page_html", "static_html", "data_json"]

# the page's files: URL path -> (file in web/, content type). The server serves these and
# nothing else (no path from a request ever reaches the file system).
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
    "/explore.css": ("explore.css", "text/css; charset=utf-8"),
}

DATA_BLOCK = '<script id="explore-data" type="application/json">{}</script>'
SCRIPT_TAG = '<script src="explore.js"></script>'
STYLE_TAG = '<link rel="stylesheet" href="explore.css">'
STATIC_CSP = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
              'script-src \'unsafe-inline\'; style-src \'unsafe-inline\'; img-src data:">')


def read_page_file(name: str) -> str:
    """The text of one of the page's files (a name from PAGE_FILES)."""
    if name not in {f for f, _ in PAGE_FILES.values()}:
        raise KeyError(f"{name!r} is not one of the explorer page's files")
    return resources.files(__package__).joinpath("web", name).read_text(encoding="utf-8")


def data_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: no '<' (so no '</script>'), no NaN."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))


def _fill(template: str, data: dict) -> str:
    if DATA_BLOCK not in template:
        raise RuntimeError("index.html lost its data block; the explorer page is damaged")
    block = f'<script id="explore-data" type="application/json">{data_json(data)}</script>'
    return template.replace(DATA_BLOCK, block)


def page_html(prompt: str | None) -> str:
    """The served index.html: the script fetches everything from the API."""
    return _fill(read_page_file("index.html"), {"mode": "served", "prompt": prompt})


def static_html(info: dict, analysis: dict, prompt: str) -> str:
    """One self-contained HTML file: script, styles and data inlined; no network at all."""
    html = read_page_file("index.html")
    for tag in (SCRIPT_TAG, STYLE_TAG):
        if tag not in html:
            raise RuntimeError(f"index.html lost {tag}; the explorer page is damaged")
    script = read_page_file("explore.js")
    if "</script" in script.lower():
        raise RuntimeError("explore.js contains '</script', which cannot be inlined")
    html = html.replace(STYLE_TAG, f"{STATIC_CSP}\n<style>\n{read_page_file('explore.css')}</style>")
    html = html.replace(SCRIPT_TAG, f"<script>\n{script}</script>")
    return _fill(html, {"mode": "static", "prompt": prompt, "info": info, "analysis": analysis})
