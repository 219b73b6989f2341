"""minigpt explore: the numbers behind the page, the server, the command, and the page itself
driven in a real headless Chromium (Playwright).

The model: a 2-layer, 4-head char-level GPT trained for 60 Adam steps on a short repeated text
(about a second), saved with save_checkpoint in a run folder with a metrics.jsonl.

Browser tests need Playwright (`pip install playwright`, in the dev extra) and a Chromium from
the system's packages (`apt-get install chromium`; .ci/run installs it; MINIGPT_CHROMIUM may
name another binary). Playwright's own browser download is not used. Without either, those
tests skip and say which is missing.

Screenshots of each view go to $MINIGPT_EXPLORE_SHOTS if set, else a temporary folder (the
path is printed; `pytest -s` shows it).
"""
from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import sigint_default

import minigpt
import minigpt.functional as F
from minigpt import GPT, GPTConfig
from minigpt.explore import Explorer, PromptError, load_explorer, make_server
from minigpt.cli import main as cli_main


def explore_main(argv):
    return cli_main(["explore", *argv])
from minigpt.sample import filter_logits, generate, next_token_probabilities, pick_token
from minigpt.tokenizers import BPETokenizer, CharTokenizer
from minigpt.training import save_checkpoint, write_metrics

REPO = Path(__file__).resolve().parent.parent
TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog. " * 12
PROMPT = "the cat sat on the"


# ---- the model ---------------------------------------------------------------------------------

def _train_tiny(steps: int = 60):
    tok = CharTokenizer.train(TEXT)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_ctx=32, n_layer=2, n_embd=32, n_head=4,
                    embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    model = GPT(cfg, seed=0)
    opt = minigpt.optim.Adam(model.parameters(), lr=3e-3)
    data = np.array(tok.encode(TEXT))
    rng = np.random.default_rng(0)
    rows = []
    for step in range(steps):
        ix = rng.integers(0, len(data) - 33, 8)
        x = np.stack([data[i:i + 32] for i in ix])  # (8, 32)
        y = np.stack([data[i + 1:i + 33] for i in ix])
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"step": step + 1, "loss": float(loss.data)}
        if (step + 1) % 20 == 0:
            row["val_loss"] = float(loss.data) + 0.05
        rows.append(row)
    return model, tok, rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("explore-run")
    model, tok, rows = _train_tiny()
    save_checkpoint(run / "ckpt", model, tok, state={"step": len(rows)})
    write_metrics(run / "metrics.jsonl", rows)
    return run


@pytest.fixture(scope="module")
def explorer(run_dir):
    return load_explorer(run_dir)


def _layer_inputs(model, ids):
    """The input of each block, h_0 .. h_{L-1} (1, T, C), by the model's own modules."""
    idx = np.asarray([ids])
    h = model.tokens_embed(idx) + model.positions_embed(np.arange(len(ids))[None, :])
    out = []
    for block in model.h:
        out.append(h)
        h = block(h)
    return out, h


def _model_qkv(model, layer, ids):
    """q, k, v (1, nh, T, hs) of one layer, from the block's c_attn (the test's own split)."""
    with minigpt.no_grad():
        inputs, _ = _layer_inputs(model, ids)
        cfg = model.config
        T, nh, hs = len(ids), cfg.n_head, cfg.head_size
        qkv = model.h[layer].attn.c_attn(inputs[layer]).data  # (1, T, 3C)
        qkv = qkv.reshape(1, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, 1, nh, T, hs)
    return qkv[0], qkv[1], qkv[2]


def model_attention(model, layer, ids):
    """Attention weights (nh, T, T) of one layer in float64: softmax(q k^T / sqrt(hs)), causal."""
    q, k, _ = _model_qkv(model, layer, ids)
    q, k = q[0].astype(np.float64), k[0].astype(np.float64)
    s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])  # (nh, T, T)
    T = len(ids)
    s[:, np.triu(np.ones((T, T), bool), 1)] = -np.inf
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def dense(rows):
    """A ragged lower-triangular list of rows (row i: keys 0..i) as a (T, T) array."""
    T = len(rows)
    a = np.zeros((T, T))
    for i, r in enumerate(rows):
        a[i, :i + 1] = r
    return a


def sample_probabilities(logits, temperature, top_k, top_p):
    """minigpt.sample's distribution, written out from its public filter_logits."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0:
        p = np.zeros_like(logits)
        p[np.argmax(logits)] = 1
        return p
    z = filter_logits(logits / temperature, top_k, top_p)
    p = np.exp(z - z.max())
    return p / p.sum()


# ---- the numbers (no browser) -------------------------------------------------------------------

def test_attention_weights_are_the_models(explorer):
    ids = explorer.encode_prompt(PROMPT)
    a = explorer.analysis(ids)
    model = explorer.model
    assert len(a["attention"]) == model.config.n_layer
    for layer in range(model.config.n_layer):
        expected = model_attention(model, layer, ids)
        q, k, v = _model_qkv(model, layer, ids)
        with minigpt.no_grad():
            y = F.attention(minigpt.Tensor(q), minigpt.Tensor(k), minigpt.Tensor(v),
                            causal=True).data[0]  # (nh, T, hs): the model's attention op
        for head in range(model.config.n_head):
            shown = dense(a["attention"][layer][head])
            np.testing.assert_allclose(shown, expected[head], atol=1e-6, rtol=0)
            np.testing.assert_allclose(shown.sum(-1), 1.0, atol=1e-6)
            # the weights reproduce what the model's own attention op computed
            np.testing.assert_allclose(shown @ v[0, head].astype(np.float64), y[head],
                                       atol=1e-5, rtol=1e-5)
    assert not np.allclose(dense(a["attention"][1][0]), dense(a["attention"][1][1]))


def test_logit_lens_ends_at_the_models_output(explorer):
    ids = explorer.encode_prompt(PROMPT)
    a = explorer.analysis(ids)
    model = explorer.model
    with minigpt.no_grad():
        logits = model(np.asarray([ids])).data[0].astype(np.float64)  # (T, V)
        inputs, _ = _layer_inputs(model, ids)
        first = model.lm_logits(inputs[0]).data[0].astype(np.float64)  # embeddings only
    names = a["lens"]["layers"]
    assert names == ["embeddings", "h.0", "h.1"]
    for lens_row, lg in ((a["lens"]["top"][-1], logits), (a["lens"]["top"][0], first)):
        p = np.exp(lg - lg.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        for t, top in enumerate(lens_row):
            assert top[0]["id"] == int(np.argmax(p[t]))
            assert [c["p"] for c in top] == sorted((c["p"] for c in top), reverse=True)
            for c in top:
                assert abs(c["p"] - p[t, c["id"]]) < 1e-6
    np.testing.assert_allclose(a["next"]["logits"], logits[-1], rtol=0, atol=0)


def test_trace_is_the_prompt_predicting_itself(explorer):
    ids = explorer.encode_prompt(PROMPT)
    a = explorer.analysis(ids)
    tr = a["trace"]
    with minigpt.no_grad():
        loss = explorer.model.loss(np.asarray([ids[:-1]]), np.asarray([ids[1:]]))
    assert abs(tr["loss"] - float(loss.data)) < 1e-6
    backward = sorted((r for r in tr["ops"] if r["backward_step"] is not None),
                      key=lambda r: r["backward_step"])
    assert backward[0]["op"] == "CrossEntropy" and backward[0]["shape"] == []
    # ... back to the embeddings: both lookups come after every op of the blocks
    embeddings = [r["backward_step"] for r in backward if r["op"] == "Embedding"]
    blocks = [r["backward_step"] for r in backward if r["module"].startswith("h.")]
    assert len(embeddings) == 2 and min(embeddings) > max(blocks)
    names = {p["name"] for p in tr["params"]}
    assert {"tokens_embed.weight", "h.1.ln_2.bias"} <= names
    assert all(p["grad_norm"] is not None and p["grad_norm"] > 0 for p in tr["params"])
    assert all(p.grad is None for p in explorer.model.parameters())  # nothing left behind
    one = explorer.analysis(ids[:1])
    assert one["trace"] is None and len(one["tokens"]) == 1


@given(data=st.data())
def test_probabilities_are_what_pick_token_draws_from(data):
    """next_token_probabilities is the distribution pick_token samples: with the same random
    stream, a draw from it is pick_token's token."""
    V = data.draw(st.integers(2, 40))
    logits = np.asarray(data.draw(st.lists(st.floats(-6, 6), min_size=V, max_size=V)))
    temperature = data.draw(st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.5]))
    top_k = data.draw(st.none() | st.integers(1, V + 2))
    top_p = data.draw(st.none() | st.floats(0.05, 1.0))
    p = next_token_probabilities(logits, temperature, top_k, top_p)
    assert abs(p.sum() - 1) < 1e-12
    for seed in range(5):
        expected = pick_token(logits, temperature, top_k, top_p, np.random.default_rng(seed))
        if temperature == 0:
            assert p[expected] == 1
        else:
            assert int(np.random.default_rng(seed).choice(V, p=p)) == expected


def test_generate_one_is_minigpt_sample(explorer):
    ids = explorer.encode_prompt(PROMPT)
    for seed in (0, 7, 123):
        got = explorer.generate_one(ids, temperature=1.3, top_k=None, top_p=0.95, seed=seed)
        assert got == generate(explorer.model, ids, 1, temperature=1.3, top_p=0.95, seed=seed)[0]
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        explorer.generate_one(ids, temperature=-1)


def test_bad_prompts_are_named(explorer):
    with pytest.raises(PromptError, match="empty"):
        explorer.encode_prompt("")
    with pytest.raises(PromptError, match=r"outside the model's vocabulary: 'Z', '€'"):
        explorer.encode_prompt("the €at Zat")
    with pytest.raises(PromptError, match="33 tokens; the explorer shows at most 32"):
        explorer.encode_prompt("a" * 33)
    with pytest.raises(PromptError, match="text"):
        explorer.encode_prompt(["the"])
    with pytest.raises(PromptError, match="outside the vocabulary"):
        explorer.check_ids([1, 2, 999])
    with pytest.raises(PromptError, match="list of integer"):
        explorer.check_ids([1, "2"])
    full = explorer.encode_prompt("a" * 32)
    with pytest.raises(PromptError, match="shorten the prompt"):
        explorer.generate_one(full, seed=0)


def test_bpe_pieces_are_shown():
    tok = BPETokenizer.train(TEXT, vocab_size=60)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=16, n_layer=1, n_embd=16, n_head=2))
    ex = Explorer(model, tok)
    a = ex.analysis(ex.encode_prompt("the cat sat"))
    pieces = [t["piece"] for t in a["tokens"]]
    assert pieces == tok.tokenize("the cat sat") and any(p.endswith("</w>") for p in pieces)
    assert ex.info()["tokenizer"] == "bpe"
    with pytest.raises(PromptError, match="'q'"):
        ex.encode_prompt("the quick cat")


def test_metrics_are_found_for_run_ckpt_and_snapshot(run_dir, tmp_path):
    assert load_explorer(run_dir).info()["metrics"]["train"][-1][0] == 60
    assert len(load_explorer(run_dir / "ckpt").info()["metrics"]["val"]) == 3
    snap = tmp_path / "run" / "snapshots" / "step-000060"
    shutil.copytree(run_dir / "ckpt", snap)
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo')
    m = load_explorer(snap).info()["metrics"]
    assert m["train"] == [[1, 3.0]] and len(m["warnings"]) == 1  # the torn line is skipped
    alone = tmp_path / "alone"
    shutil.copytree(run_dir / "ckpt", alone)
    assert load_explorer(alone).info()["metrics"] is None


def test_static_html_cannot_be_broken_out_of(explorer):
    """Text in the data (a prompt, a vocabulary entry) can never close the script element."""
    from minigpt.explore.page import data_json, static_html
    nasty = "a</script><script>alert(1)</script>\u2028<!--"
    text = data_json({"x": nasty})
    assert "<" not in text and "\u2028" not in text and json.loads(text) == {"x": nasty}
    html = static_html(explorer.info(), explorer.analysis([1, 2]), nasty)
    assert html.lower().count("<script") == 2 and html.lower().count("</script") == 2
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    with pytest.raises(ValueError, match="not JSON compliant"):
        data_json({"x": float("nan")})


# ---- the server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(explorer):
    httpd = make_server(explorer, "127.0.0.1", 0, prompt=PROMPT)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def request(base, method, path, body=None, raw=None, headers=None):
    """(status, parsed JSON or text) of one request; the path is sent exactly as given."""
    host, port = base.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {})
    r = conn.getresponse()
    text = r.read().decode("utf-8")
    conn.close()
    kind = r.getheader("Content-Type", "")
    return r.status, (json.loads(text) if kind.startswith("application/json") else text)


def test_server_answers_and_refuses_bad_input(server, explorer):
    status, info = request(server, "GET", "/api/info")
    assert status == 200 and info["config"]["n_layer"] == 2 and len(info["vocab"]) == 15
    status, a = request(server, "POST", "/api/analyze", {"prompt": PROMPT})
    assert status == 200 and [t["id"] for t in a["tokens"]] == explorer.encode_prompt(PROMPT)
    bad = [
        ({"prompt": ""}, "empty"),
        ({"prompt": "Zebra"}, "outside the model's vocabulary: 'Z', 'b', 'r'"),
        ({"prompt": "a" * 40}, "at most 32"),
        ({"ids": [1, 99]}, "outside the vocabulary"),
        ({"text": "the"}, '{"prompt"'),
        ([1, 2], "JSON object"),
    ]
    for body, message in bad:
        status, answer = request(server, "POST", "/api/analyze", body)
        assert status == 400 and message in answer["error"], (body, answer)
    status, answer = request(server, "POST", "/api/analyze", raw=b"{not json",
                             headers={"Content-Length": "9"})
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = request(server, "POST", "/api/analyze", raw=b"",
                             headers={"Content-Length": str(10 ** 9)})
    assert status == 413 and "body" in answer["error"]
    ids = explorer.encode_prompt(PROMPT)
    for body, message in (({"ids": ids, "temperature": -1}, "temperature must be"),
                          ({"ids": ids, "top_k": 0}, "top_k must be"),
                          ({"ids": ids, "top_p": 1.5}, "top_p must be"),
                          ({"ids": ids, "seed": -2}, "seed must be"),
                          ({"ids": ids, "topk": 3}, "unknown fields")):
        status, answer = request(server, "POST", "/api/generate", body)
        assert status == 400 and message in answer["error"], (body, answer)
    status, answer = request(server, "POST", "/api/generate",
                             {"ids": ids, "temperature": 0.7, "top_k": 5, "seed": 3})
    assert status == 200
    assert answer["token"] == generate(explorer.model, ids, 1, temperature=0.7, top_k=5, seed=3)[0]
    assert [t["id"] for t in answer["analysis"]["tokens"]] == ids + [answer["token"]]
    assert request(server, "GET", "/api/analyze")[0] == 405
    assert request(server, "POST", "/explore.js", {})[0] == 405


def test_server_serves_its_own_files_only(server):
    status, page = request(server, "GET", "/")
    assert status == 200 and '<script src="explore.js">' in page and PROMPT in page
    assert request(server, "GET", "/explore.css")[0] == 200
    js_status, js = request(server, "GET", "/explore.js")
    assert js_status == 200 and "filterLogits" in js
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/explore.js/../../setup.py", "/page/explore.js", "//etc/passwd",
                 "/..%2f..%2fsetup.py", "/minigpt/explore/server.py", "/README.md",
                 "/api/../../setup.py", "/index.html?../../setup.py#x"):
        status, answer = request(server, "GET", path)
        if path.startswith("/index.html?"):  # a query string does not change the file
            assert status == 200 and "explore.js" in answer
            continue
        assert status == 404, path
        assert isinstance(answer, dict) and "not found" in answer["error"], path


# ---- the command ---------------------------------------------------------------------------------

def test_command_errors(run_dir, tmp_path, capsys):
    assert explore_main(["--ckpt", str(tmp_path / "nothing"), "--no-browser"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert explore_main(["--ckpt", str(tmp_path / "empty"), "--no-browser"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert explore_main(["--ckpt", str(run_dir), "--static", str(tmp_path / "a.html")]) == 2
    assert "--static needs --prompt" in capsys.readouterr().err
    assert explore_main(["--ckpt", str(run_dir), "--prompt", "Zz", "--no-browser"]) == 2
    assert "'Z'" in capsys.readouterr().err
    out = tmp_path / "keep.html"
    out.write_text("mine")
    assert explore_main(["--ckpt", str(run_dir), "--prompt", "the", "--static", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    with pytest.raises(SystemExit):
        explore_main(["--ckpt", str(run_dir), "--port", "70000"])
    assert "--port: must be an integer in [0, 65535]" in capsys.readouterr().err
    with make_server(load_explorer(run_dir), "127.0.0.1", 0) as busy:
        port = busy.server_address[1]
        assert explore_main(["--ckpt", str(run_dir), "--port", str(port), "--no-browser"]) == 2
        assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_command_writes_the_static_page(run_dir, tmp_path):
    """`minigpt explore ... --static` through the main command line."""
    out = tmp_path / "p.html"
    assert explore_main(["--ckpt", str(run_dir), "--prompt", "the", "--static", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize("idle_connection", [False, True], ids=["", "idle-connection"])
def test_served_process_stops_cleanly_on_ctrl_c(run_dir, idle_connection):
    """Ctrl-C stops the server (exit 0, "stopped"), also while a connection that never sends a
    request is open (what a browser's preconnect leaves): its request thread waits for a line
    forever, so closing the server must not join it (the server's request threads are daemons;
    with block_on_close and non-daemon threads this test hangs)."""
    import socket
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minigpt", "explore", "--ckpt", str(run_dir),
                             "--port", "0", "--no-browser", "--prompt", "the"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, preexec_fn=sigint_default)
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "(Ctrl-C stops)" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        status, info = request(url, "GET", "/api/info")
        assert status == 200
        idle = None
        if idle_connection:
            host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
            idle = socket.create_connection((host, int(port)), timeout=10)
            status, info = request(url, "GET", "/api/info")  # accepted by now: its thread waits
            assert status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if idle_connection and idle is not None:
            idle.close()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


# ---- the page, in a real browser -----------------------------------------------------------------

def _chromium() -> str | None:
    named = os.environ.get("MINIGPT_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"Playwright is not installed ({e}); pip install playwright (dev extra)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found: install the system package (apt-get install chromium; "
                    ".ci/run does) or set MINIGPT_CHROMIUM to a Chromium binary")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe)
        except Exception as e:  # a browser that cannot start here
            pytest.skip(f"Chromium at {exe} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("MINIGPT_EXPLORE_SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nexplore screenshots: {folder}")
    return folder


class Page:
    """A browser tab that records console errors and page errors."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1300, "height": 1000})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def ready(self, count: int = 1):
        self.page.wait_for_function(f"() => Number(document.body.dataset.ready || 0) >= {count}",
                                    timeout=30000)

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser):
    t = Page(browser)
    yield t
    t.close()


def shown_attention(page, layer, head):
    page.click(f"#attn-grid canvas[data-layer='{layer}'][data-head='{head}']")
    lines = page.eval_on_selector_all(
        "#attn-lines line", "ls => ls.map(l => [+l.dataset.q, +l.dataset.k, +l.dataset.w])")
    T = max(q for q, _, _ in lines) + 1
    a = np.zeros((T, T))
    for q, k, w in lines:
        a[q, k] = w
    assert len(lines) == T * (T + 1) // 2
    return a


def bars(page):
    return page.eval_on_selector_all(
        "#next-bars .bar", "bs => bs.map(b => [+b.dataset.id, +b.dataset.p])")


def test_served_page(tab, server, explorer, shots):
    page = tab.page
    page.goto(server)
    tab.ready()
    ids = explorer.encode_prompt(PROMPT)
    chips = page.eval_on_selector_all("#tokens .tok", "cs => cs.map(c => +c.dataset.id)")
    assert chips == ids
    assert "2 layers" in page.inner_text("#model-info")

    # attention shown for (layer, head) = the model's
    for layer, head in ((1, 2), (0, 3)):
        expected = model_attention(explorer.model, layer, ids)[head]
        np.testing.assert_allclose(shown_attention(page, layer, head), expected, atol=1e-6, rtol=0)

    # hovering a token highlights its lines, and moving to another token changes them
    page.hover("#tokens .tok[data-pos='3']")
    hl3 = page.eval_on_selector_all("#attn-lines line.hl", "ls => ls.map(l => +l.dataset.q)")
    assert hl3 == [3] * 4
    page.hover("#attn-lines text.q[data-pos='9']")
    hl9 = page.eval_on_selector_all("#attn-lines line.hl", "ls => ls.map(l => +l.dataset.q)")
    assert hl9 == [9] * 10
    assert "token 9" in page.inner_text("#attn-readout")
    page.locator("#attention-view").screenshot(path=str(shots / "explore_attention.png"))
    page.mouse.move(0, 0)

    # the next-token bars at temperature 0.7, top-k 5 = minigpt.sample's probabilities
    page.fill("#temperature", "0.7")
    page.fill("#top-k", "5")
    logits = np.asarray(explorer.analysis(ids)["next"]["logits"])
    expected = sample_probabilities(logits, 0.7, 5, None)
    shown = bars(page)
    assert len(shown) == 5
    assert {i for i, _ in shown} == set(np.flatnonzero(expected))
    for i, p in shown:
        assert abs(p - expected[i]) < 1e-6
    # ... and the page's formula over the whole vocabulary, for more settings
    for t, k, p in ((0.7, 5, None), (1.0, None, 0.9), (1.3, 8, 0.5), (0.0, None, None),
                    (0.25, 1, None), (2.0, 3, 0.99)):
        got = page.evaluate("([l, t, k, p]) => Array.from(window.minigptExplore"
                            ".nextTokenProbabilities(l, t, k, p))", [logits.tolist(), t, k, p])
        np.testing.assert_allclose(got, sample_probabilities(logits, t, k, p), atol=1e-6, rtol=0)
    page.fill("#top-k", "0")
    assert "top_k must be an integer >= 1" in page.inner_text("#controls-error")
    page.fill("#top-k", "5")
    page.locator("#next-view").screenshot(path=str(shots / "explore_next_token.png"))

    # generate one token: the server samples with the page's seed, as minigpt.sample does
    page.fill("#seed", "7")
    page.click("#generate")
    tab.ready(2)
    chips = page.eval_on_selector_all("#tokens .tok", "cs => cs.map(c => +c.dataset.id)")
    picked = generate(explorer.model, ids, 1, temperature=0.7, top_k=5, seed=7)[0]
    assert chips == ids + [picked]
    assert page.input_value("#seed") == "8"
    assert page.input_value("#prompt") == PROMPT + explorer.tokenizer.decode([picked])
    assert page.locator("#tokens .tok.new").count() == 1

    page.locator("#tokens-view").screenshot(path=str(shots / "explore_tokens.png"))
    page.locator("#backward-view").screenshot(path=str(shots / "explore_backward.png"))
    page.locator("#run-view").screenshot(path=str(shots / "explore_run.png"))
    page.screenshot(path=str(shots / "explore_page.png"), full_page=True)
    flow = page.eval_on_selector_all("#flow g.row", "gs => gs.map(g => +g.dataset.step)")
    assert flow == sorted(flow) and len(flow) > 20
    assert page.locator("#param-grads g[data-param]").count() == len(list(explorer.model.parameters()))
    assert page.locator("#loss-chart path.train").count() == 1
    assert tab.errors == []


def test_page_shows_bad_input(tab, server):
    page = tab.page
    page.goto(server)
    tab.ready()
    page.fill("#prompt", "the Zebra")
    page.click("#analyze")
    page.wait_for_selector("#error:not([hidden])")
    assert "outside the model's vocabulary: 'Z', 'b', 'r'" in page.inner_text("#error")
    page.fill("#prompt", "")
    page.click("#analyze")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('empty')")
    page.fill("#prompt", "the cat")
    page.click("#analyze")
    tab.ready(2)
    assert page.is_hidden("#error")
    # the only console errors: the browser's own notes on the two 400 answers
    assert len(tab.errors) == 2 and all("400" in e for e in tab.errors), tab.errors


def test_static_file_works_offline(tab, run_dir, explorer, tmp_path, shots):
    out = tmp_path / "page.html"
    assert explore_main(["--ckpt", str(run_dir), "--prompt", PROMPT, "--static", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "explore.js" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    page = tab.page
    attempted = []

    def block(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    page.route("**/*", block)
    page.goto(out.as_uri())
    tab.ready()
    ids = explorer.encode_prompt(PROMPT)
    chips = page.eval_on_selector_all("#tokens .tok", "cs => cs.map(c => +c.dataset.id)")
    assert chips == ids
    np.testing.assert_allclose(shown_attention(page, 1, 1),
                               model_attention(explorer.model, 1, ids)[1], atol=1e-6, rtol=0)
    page.fill("#temperature", "0.7")
    page.fill("#top-k", "5")
    logits = np.asarray(explorer.analysis(ids)["next"]["logits"])
    expected = sample_probabilities(logits, 0.7, 5, None)
    for i, p in bars(page):
        assert abs(p - expected[i]) < 1e-6
    assert page.is_disabled("#generate")
    page.screenshot(path=str(shots / "explore_static.png"), full_page=True)
    assert attempted == [] and tab.errors == []
    assert explore_main(["--ckpt", str(run_dir), "--prompt", "the", "--static", str(out),
                         "--force"]) == 0
