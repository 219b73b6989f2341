// minigpt explore: the page's script. Plain JavaScript, SVG and canvas; nothing fetched from
// anywhere but the server that sent the page (and nothing at all in the --static file).
//
// The data (see minigpt/explore/data.py for how each number is computed):
//   info      {source, config, parameters, tokenizer, vocab: [piece per id], max_tokens, metrics}
//   analysis  {tokens: [{id, piece}], text, attention[layer][head][i] = weights over keys 0..i,
//              next: {logits}, lens: {layers, top[layer][t] = [{id, p}]}, trace: {...} | null}
"use strict";

(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const boot = JSON.parse($("explore-data").textContent || "{}");

  const state = {
    mode: boot.mode || "static",
    info: boot.info || null,
    analysis: boot.analysis || null,
    layer: 0,
    head: 0,
    hover: null,       // the hovered token position, or null
    newest: null,      // position of the token the last "generate" appended
    busy: false,
  };

  // ---- small helpers -------------------------------------------------------------------------
  function el(tag, attrs, text, parent) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function svgEl(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // A piece as text on screen: whitespace made visible, BPE's end-of-word mark kept apart.
  function visible(text) {
    return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }

  function splitPiece(piece) {
    const eow = "</w>";
    if (state.info && state.info.tokenizer === "bpe" && piece.endsWith(eow) && piece.length > eow.length) {
      return [piece.slice(0, -eow.length), eow];
    }
    return [piece, ""];
  }

  function pieceText(id) {
    const piece = state.info.vocab[id];
    const [body, mark] = splitPiece(piece);
    return visible(body) + (mark ? "\u00b7" : "");  // a middle dot marks a word's end
  }

  function fmt(x) {
    if (x === null || x === undefined) return "-";
    if (x === 0) return "0";
    const a = Math.abs(x);
    return a >= 1e-3 && a < 1e4 ? x.toPrecision(3) : x.toExponential(2);
  }

  function pct(p) {
    return (100 * p).toFixed(p >= 0.1 ? 1 : 2) + "%";
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function setStatus(text) {
    $("status").textContent = text || "";
  }

  // ---- sampling: the same formula as minigpt/sample.py (filter_logits, pick_token) ----------
  // filter_logits: every logit below the k-th largest becomes -inf (ties with it are kept);
  // then, over the logits in descending order (a stable sort), the smallest prefix whose
  // softmax mass reaches top_p is kept (numpy's searchsorted(cumsum, top_p) + 1).
  function filterLogits(logits, topK, topP) {
    const n = logits.length;
    const z = Float64Array.from(logits);
    if (topK !== null && topK < n) {
      const sorted = Float64Array.from(z).sort();  // ascending
      const kth = sorted[n - topK];
      for (let i = 0; i < n; i++) if (z[i] < kth) z[i] = -Infinity;
    }
    if (topP !== null && topP < 1) {
      const order = Array.from(z.keys()).sort((a, b) => (z[a] > z[b] ? -1 : z[a] < z[b] ? 1 : 0));
      const top = z[order[0]];
      const probs = order.map((i) => Math.exp(z[i] - top));
      let sum = 0;
      for (const p of probs) sum += p;
      let cum = 0;
      let cut = n;  // the first rank where the running mass reaches top_p, n if none does
      for (let r = 0; r < n; r++) {
        cum += probs[r] / sum;
        if (cum >= topP) { cut = r; break; }
      }
      for (let r = cut + 1; r < n; r++) z[order[r]] = -Infinity;
    }
    return z;
  }

  // pick_token's distribution: temperature 0 puts all mass on the (first) argmax.
  function nextTokenProbabilities(logits, temperature, topK, topP) {
    const n = logits.length;
    const p = new Float64Array(n);
    if (temperature === 0) {
      let best = 0;
      for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
      p[best] = 1;
      return p;
    }
    const z = filterLogits(Array.from(logits, (x) => x / temperature), topK, topP);
    let m = -Infinity;
    for (const v of z) if (v > m) m = v;
    let sum = 0;
    for (let i = 0; i < n; i++) { p[i] = Math.exp(z[i] - m); sum += p[i]; }
    for (let i = 0; i < n; i++) p[i] /= sum;
    return p;
  }

  // The controls, checked with minigpt.checks' rules (the same words as its errors).
  function readSettings() {
    const t = $("temperature").value.trim();
    const k = $("top-k").value.trim();
    const pp = $("top-p").value.trim();
    const s = $("seed").value.trim();
    const temperature = Number(t);
    if (t === "" || !Number.isFinite(temperature) || temperature < 0) {
      throw new Error("temperature must be a number >= 0, got " + JSON.stringify(t));
    }
    let topK = null;
    if (k !== "") {
      topK = Number(k);
      if (!Number.isInteger(topK) || topK < 1) throw new Error("top_k must be an integer >= 1, got " + JSON.stringify(k));
    }
    let topP = null;
    if (pp !== "") {
      topP = Number(pp);
      if (!Number.isFinite(topP) || topP <= 0 || topP > 1) throw new Error("top_p must be a number in (0, 1], got " + JSON.stringify(pp));
    }
    let seed = null;
    if (s !== "") {
      seed = Number(s);
      if (!Number.isInteger(seed) || seed < 0) throw new Error("seed must be an integer >= 0, got " + JSON.stringify(s));
    }
    return { temperature, topK, topP, seed };
  }

  // ---- the model line ------------------------------------------------------------------------
  function renderInfo() {
    const info = state.info;
    const c = info.config;
    $("model-info").textContent = `${info.source} \u00b7 ${info.tokenizer} tokenizer, ${c.vocab_size} tokens \u00b7 ` +
      `${c.n_layer} layers \u00d7 ${c.n_head} heads \u00b7 width ${c.n_embd} \u00b7 context ${c.n_ctx} \u00b7 ` +
      `${info.parameters.toLocaleString("en-US")} parameters`;
    renderRun();
  }

  // ---- 1. tokens -----------------------------------------------------------------------------
  function renderTokens() {
    const box = $("tokens");
    clear(box);
    state.analysis.tokens.forEach((t, i) => {
      const chip = el("span", { class: "tok", "data-pos": i, "data-id": t.id,
                                title: `position ${i}, id ${t.id}: ${JSON.stringify(t.piece)}` }, null, box);
      const [body, mark] = splitPiece(t.piece);
      const main = el("span", {}, visible(body), chip);
      if (mark) el("span", { class: "eow" }, mark, main);
      el("small", {}, String(t.id), chip);
      if (i === state.newest) chip.classList.add("new");
      chip.addEventListener("mouseenter", () => setHover(i));
      chip.addEventListener("mouseleave", () => setHover(null));
    });
  }

  function setHover(pos) {
    state.hover = pos;
    for (const chip of $("tokens").children) {
      chip.classList.toggle("hover", Number(chip.dataset.pos) === pos);
    }
    highlightLines();
    for (const cell of $("lens").querySelectorAll("[data-pos]")) {
      cell.classList.toggle("col-hover", Number(cell.dataset.pos) === pos);
    }
  }

  // ---- 2. attention --------------------------------------------------------------------------
  function renderAttentionGrid() {
    const grid = $("attn-grid");
    clear(grid);
    const att = state.analysis.attention;
    const L = att.length;
    const H = att[0].length;
    const T = state.analysis.tokens.length;
    grid.style.gridTemplateColumns = `auto repeat(${H}, 88px)`;
    el("div", { class: "lbl" }, "", grid);
    for (let h = 0; h < H; h++) el("div", { class: "lbl" }, `head ${h}`, grid);
    for (let l = 0; l < L; l++) {
      el("div", { class: "lbl" }, `layer ${l}`, grid);
      for (let h = 0; h < H; h++) {
        // one pixel per (query, key), scaled up by the style sheet: white to blue by weight
        const canvas = el("canvas", { width: T, height: T, "data-layer": l, "data-head": h,
                                      title: `layer ${l}, head ${h}: click to draw its lines` }, null, grid);
        const ctx = canvas.getContext("2d");
        const image = ctx.createImageData(T, T);
        const rows = att[l][h];
        for (let i = 0; i < T; i++) {
          for (let j = 0; j < T; j++) {
            const w = j <= i ? rows[i][j] : 0;
            const at = 4 * (i * T + j);
            image.data[at] = Math.round(255 - (255 - 31) * w);
            image.data[at + 1] = Math.round(255 - (255 - 95) * w);
            image.data[at + 2] = Math.round(255 - (255 - 191) * w);
            image.data[at + 3] = 255;
          }
        }
        ctx.putImageData(image, 0, 0);
        if (l === state.layer && h === state.head) canvas.classList.add("selected");
        canvas.addEventListener("click", () => selectHead(l, h));
      }
    }
  }

  function selectHead(layer, head) {
    state.layer = layer;
    state.head = head;
    for (const c of $("attn-grid").querySelectorAll("canvas")) {
      c.classList.toggle("selected", Number(c.dataset.layer) === layer && Number(c.dataset.head) === head);
    }
    renderHeadLines();
  }

  function renderHeadLines() {
    const svg = $("attn-lines");
    clear(svg);
    const tokens = state.analysis.tokens;
    const T = tokens.length;
    const rows = state.analysis.attention[state.layer][state.head];
    $("attn-head-title").textContent = `layer ${state.layer}, head ${state.head}: from each token (left) to the tokens it attends to (right)`;
    const rowH = T <= 32 ? 20 : T <= 64 ? 14 : 10;
    const labelW = 130;
    const gap = 220;
    const width = 2 * labelW + gap;
    const height = T * rowH + 24;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svgEl("text", { x: labelW - 8, y: 12, "text-anchor": "end", class: "muted" }, svg, "query");
    svgEl("text", { x: labelW + gap + 8, y: 12, class: "muted" }, svg, "key");
    const y = (i) => 24 + i * rowH + rowH / 2;
    const lines = svgEl("g", { class: "lines" }, svg);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        const w = rows[i][j];
        svgEl("line", { x1: labelW, y1: y(i), x2: labelW + gap, y2: y(j), "data-q": i, "data-k": j,
                        "data-w": String(w), "stroke-width": (0.5 + 4 * w).toFixed(2),
                        "stroke-opacity": w.toFixed(4) }, lines);
      }
    }
    const font = { style: `font-size: ${Math.min(12, rowH - 1)}px` };  // rows never overlap
    for (let i = 0; i < T; i++) {
      const label = `${pieceText(tokens[i].id)} ${i}`;
      const q = svgEl("text", { x: labelW - 8, y: y(i) + 4, "text-anchor": "end", class: "q", "data-pos": i, ...font }, svg, label);
      svgEl("text", { x: labelW + gap + 8, y: y(i) + 4, class: "k", "data-pos": i, ...font }, svg, `${i} ${pieceText(tokens[i].id)}`);
      q.addEventListener("mouseenter", () => setHover(i));
      q.addEventListener("mouseleave", () => setHover(null));
    }
    highlightLines();
  }

  function highlightLines() {
    const svg = $("attn-lines");
    const pos = state.hover;
    for (const line of svg.querySelectorAll("line")) {
      const mine = pos !== null && Number(line.dataset.q) === pos;
      line.classList.toggle("hl", mine);
      line.classList.toggle("dim", pos !== null && !mine);
      const w = Number(line.dataset.w);
      line.setAttribute("stroke-opacity", (pos === null ? w : mine ? Math.min(1, 0.1 + 2 * w) : 0.05 * w).toFixed(4));
    }
    for (const t of svg.querySelectorAll("text.q, text.k")) {
      t.classList.toggle("hover", pos !== null && Number(t.dataset.pos) === pos);
    }
    const readout = $("attn-readout");
    if (pos === null || !state.analysis || pos >= state.analysis.tokens.length) {
      readout.textContent = "hover a token to list where it looks";
      return;
    }
    const row = state.analysis.attention[state.layer][state.head][pos];
    const best = row.map((w, j) => [w, j]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    readout.textContent = `token ${pos} (${pieceText(state.analysis.tokens[pos].id)}) looks at: ` +
      best.map(([w, j]) => `${j} ${pieceText(state.analysis.tokens[j].id)} ${pct(w)}`).join(", ");
  }

  // ---- 3. next token and logit lens ---------------------------------------------------------
  function renderBars() {
    const box = $("next-bars");
    let settings;
    try {
      settings = readSettings();
      $("controls-error").textContent = "";
    } catch (e) {
      $("controls-error").textContent = e.message;
      return;
    }
    clear(box);
    const p = nextTokenProbabilities(state.analysis.next.logits, settings.temperature, settings.topK, settings.topP);
    const ids = Array.from(p.keys()).filter((i) => p[i] > 0);
    ids.sort((a, b) => p[b] - p[a] || a - b);
    const shown = ids.slice(0, 15);
    const maxP = shown.length ? p[shown[0]] : 1;
    for (const id of shown) {
      el("div", { class: "piece", title: `id ${id}: ${JSON.stringify(state.info.vocab[id])}` }, pieceText(id), box);
      const track = el("div", { class: "track" }, null, box);
      const fill = el("div", { class: "fill bar", "data-id": id, "data-p": String(p[id]) }, null, track);
      fill.style.width = `${(100 * p[id] / maxP).toFixed(2)}%`;
      el("div", { class: "val" }, pct(p[id]), box);
    }
    if (ids.length > shown.length) {
      el("div", { class: "piece" }, "\u2026", box);
      el("div", { class: "val" }, `${ids.length - shown.length} more tokens with p > 0`, box);
      el("div", {}, "", box);
    }
  }

  function renderLens() {
    const table = $("lens");
    clear(table);
    const a = state.analysis;
    const T = a.tokens.length;
    const head = el("tr", {}, null, el("thead", {}, null, table));
    el("th", { class: "row" }, "input \u2192", head);
    a.tokens.forEach((t, i) => el("th", { "data-pos": i, title: `position ${i}` }, pieceText(t.id), head));
    const body = el("tbody", {}, null, table);
    const L = a.lens.layers.length;
    a.lens.layers.forEach((name, l) => {
      const tr = el("tr", {}, null, body);
      const label = l === L - 1 ? `${name} (output)` : name;
      el("th", { class: "row" }, label, tr);
      for (let t = 0; t < T; t++) {
        const top = a.lens.top[l][t];
        const best = top[0];
        const td = el("td", { "data-pos": t, "data-layer": l, "data-id": best.id,
                              title: top.map((c) => `${JSON.stringify(state.info.vocab[c.id])} ${pct(c.p)}`).join("\n") },
                      pieceText(best.id), tr);
        td.style.background = `rgba(24, 128, 72, ${(0.08 + 0.6 * best.p).toFixed(3)})`;
        if (t + 1 < T && a.tokens[t + 1].id === best.id) td.classList.add("hit");
      }
    });
    const foot = el("tr", {}, null, el("tfoot", {}, null, table));
    el("th", { class: "row" }, "next token", foot);
    for (let t = 0; t < T; t++) {
      el("th", { "data-pos": t }, t + 1 < T ? pieceText(a.tokens[t + 1].id) : "?", foot);
    }
  }

  // ---- 4. backward pass ----------------------------------------------------------------------
  function renderTrace() {
    const svg = $("flow");
    const params = $("param-grads");
    clear(svg);
    clear(params);
    const tr = state.analysis.trace;
    if (!tr) {
      $("trace-summary").textContent = "A one-token prompt predicts nothing: no loss, no backward pass. Add a token.";
      return;
    }
    const ops = tr.ops.filter((r) => r.backward_step !== null).sort((a, b) => a.backward_step - b.backward_step);
    const T = state.analysis.tokens.length;
    $("trace-summary").textContent = `loss ${tr.loss.toFixed(4)} (mean cross-entropy of ${T - 1} predictions) \u00b7 ` +
      `${tr.ops.length} ops forward, ${ops.length} visited backward`;
    const rowH = 22;
    const arcW = 150;
    const boxX = arcW + 10;
    const boxW = 400;
    const barX = boxX + boxW + 14;
    const barW = 180;
    const paramX = barX + barW + 64;
    const width = paramX + 330;
    const height = ops.length * rowH + 30;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svgEl("text", { x: boxX, y: 14, class: "muted" }, svg, "op (#forward index) \u00b7 module \u00b7 output shape");
    svgEl("text", { x: barX, y: 14, class: "muted" }, svg, "|dL/dy| (log scale)");
    svgEl("text", { x: paramX, y: 14, class: "muted" }, svg, "parameter gradients it hands out");
    const rowOf = new Map(ops.map((r, k) => [r.index, k]));
    const y = (k) => 24 + k * rowH;
    const norms = ops.map((r) => r.grad_norm).filter((g) => g !== null && g > 0);
    const lo = Math.log10(Math.min(...norms));
    const hi = Math.log10(Math.max(...norms));
    const scale = (g) => (g === null || g <= 0 ? 0 : 6 + (barW - 6) * (hi > lo ? (Math.log10(g) - lo) / (hi - lo) : 1));
    const arcs = svgEl("g", {}, svg);
    const rows = [];
    ops.forEach((r, k) => {
      const g = svgEl("g", { class: "row", "data-index": r.index, "data-step": r.backward_step }, svg);
      const usesParam = r.inputs.some((src) => !src.startsWith("#") && src !== "input");
      svgEl("rect", { class: "node" + (usesParam ? " param-op" : ""), x: boxX, y: y(k), width: boxW, height: rowH - 4, rx: 3 }, g);
      const shape = "(" + r.shape.join(", ") + ")";
      svgEl("text", { x: boxX + 6, y: y(k) + 13 }, g, `${r.op} #${r.index}`);
      svgEl("text", { x: boxX + 150, y: y(k) + 13, class: "muted" }, g, `${r.module || "-"}  ${shape}`);
      svgEl("rect", { class: "gbar", x: barX, y: y(k) + 3, width: scale(r.grad_norm).toFixed(1), height: rowH - 10 }, g);
      svgEl("text", { x: barX + scale(r.grad_norm) + 6, y: y(k) + 13, class: "muted" }, g, fmt(r.grad_norm));
      const params = r.inputs.filter((src) => !src.startsWith("#") && src !== "input");
      const handed = r.inputs.map((src, j) => [src, r.input_grad_norms[j]])
        .filter(([src, gn]) => !src.startsWith("#") && src !== "input" && gn !== null)
        .map(([src, gn]) => `${src.split(".").slice(-2).join(".")} ${fmt(gn)}`);
      if (handed.length) svgEl("text", { x: paramX, y: y(k) + 13, class: "param-note" }, g, handed.join(", "));
      const grads = r.inputs.map((src, j) => `${src}: ${fmt(r.input_grad_norms[j])}`).join("\n  ");
      svgEl("title", {}, g, `${r.op} #${r.index} (${r.impl || "autograd"}) in ${r.module || "the model"}\n` +
        `output ${shape}: mean ${fmt(r.mean)}, std ${fmt(r.std)}, max|y| ${fmt(r.absmax)}\n` +
        `|dL/dy| ${fmt(r.grad_norm)}\ngradients to its inputs:\n  ${grads}` +
        (params.length ? `\nparameters: ${params.join(", ")}` : ""));
      rows.push(g);
    });
    // arcs: op -> the ops whose outputs it read (its gradient goes there next)
    ops.forEach((r, k) => {
      r.inputs.forEach((src, j) => {
        if (!src.startsWith("#") || r.input_grad_norms[j] === null) return;
        const target = rowOf.get(Number(src.slice(1)));
        if (target === undefined) return;
        const y1 = y(k) + rowH / 2 - 2;
        const y2 = y(target) + rowH / 2 - 2;
        const bend = Math.min(arcW - 6, 8 + 6 * Math.sqrt(Math.abs(target - k)) * 3);
        svgEl("path", { class: "arc", "data-from": r.index, "data-to": src.slice(1),
                        d: `M ${boxX} ${y1} C ${boxX - bend} ${y1}, ${boxX - bend} ${y2}, ${boxX} ${y2}` }, arcs);
      });
    });
    renderParamGrads(tr.params);
  }

  function renderParamGrads(list) {
    const svg = $("param-grads");
    const rowH = 18;
    const nameW = 260;
    const barW = 300;
    const width = nameW + barW + 200;
    const height = list.length * rowH + 26;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svgEl("text", { x: 6, y: 14, class: "muted" }, svg, "parameter (shape)");
    svgEl("text", { x: nameW, y: 14, class: "muted" }, svg, "|dL/dw| (log scale), |dL/dw| / |w|");
    const norms = list.map((p) => p.grad_norm).filter((g) => g !== null && g > 0);
    const lo = Math.log10(Math.min(...norms));
    const hi = Math.log10(Math.max(...norms));
    list.forEach((p, k) => {
      const y = 22 + k * rowH;
      const g = svgEl("g", { "data-param": p.name }, svg);
      svgEl("text", { x: 6, y: y + 12 }, g, `${p.name} (${p.shape.join("\u00d7")})`);
      const w = p.grad_norm === null || p.grad_norm <= 0 ? 0 :
        4 + (barW - 4) * (hi > lo ? (Math.log10(p.grad_norm) - lo) / (hi - lo) : 1);
      svgEl("rect", { class: "gbar", x: nameW, y: y + 2, width: w.toFixed(1), height: rowH - 6 }, g);
      const ratio = p.grad_norm !== null && p.norm ? p.grad_norm / p.norm : null;
      svgEl("text", { x: nameW + w + 6, y: y + 12, class: "muted" }, g,
            p.grad_norm === null ? "no gradient" : `${fmt(p.grad_norm)}  (${fmt(ratio)})`);
    });
  }

  // ---- 5. the run's loss curves --------------------------------------------------------------
  function renderRun() {
    const svg = $("loss-chart");
    clear(svg);
    const m = state.info.metrics;
    const note = $("run-note");
    if (!m || !m.train.length) {
      note.textContent = "No metrics.jsonl beside this checkpoint (it is read from the run folder the checkpoint sits in).";
      svg.setAttribute("width", 0);
      svg.setAttribute("height", 0);
      return;
    }
    note.textContent = `Loss per step from the run's metrics.jsonl (${m.train.length} steps` +
      (m.val.length ? `, ${m.val.length} validation points` : "") + ")." +
      (m.warnings.length ? ` ${m.warnings.length} corrupt lines skipped.` : "");
    const W = 720, H = 280, left = 64, right = 16, top = 14, bottom = 40;
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const pts = m.train.filter((r) => r[1] !== null).concat(m.val.filter((r) => r[1] !== null));
    const xs = pts.map((r) => r[0]);
    const ys = pts.map((r) => r[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = (x) => left + (W - left - right) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
    const sy = (v) => top + (H - top - bottom) * (y1 > y0 ? (y1 - v) / (y1 - y0) : 0.5);
    for (let k = 0; k <= 4; k++) {
      const v = y0 + (y1 - y0) * k / 4;
      svgEl("line", { class: "grid", x1: left, x2: W - right, y1: sy(v), y2: sy(v) }, svg);
      svgEl("text", { x: left - 6, y: sy(v) + 4, "text-anchor": "end", class: "muted" }, svg, v.toFixed(2));
      const s = x0 + (x1 - x0) * k / 4;
      svgEl("text", { x: sx(s), y: H - bottom + 16, "text-anchor": "middle", class: "muted" }, svg, String(Math.round(s)));
    }
    svgEl("line", { class: "axis", x1: left, x2: left, y1: top, y2: H - bottom }, svg);
    svgEl("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }, svg);
    svgEl("text", { x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle", class: "muted" }, svg, "step");
    const path = (rows) => rows.filter((r) => r[1] !== null).map((r, k) => `${k ? "L" : "M"} ${sx(r[0]).toFixed(1)} ${sy(r[1]).toFixed(1)}`).join(" ");
    svgEl("path", { class: "train", d: path(m.train) }, svg);
    if (m.val.length) {
      svgEl("path", { class: "val", d: path(m.val) }, svg);
      for (const r of m.val) if (r[1] !== null) svgEl("circle", { class: "val-dot", cx: sx(r[0]), cy: sy(r[1]), r: 3 }, svg);
    }
    svgEl("text", { x: 14, y: (top + H - bottom) / 2, "text-anchor": "middle", class: "muted",
                    transform: `rotate(-90 14 ${(top + H - bottom) / 2})` }, svg, "loss (nats per token)");
    svgEl("text", { x: W - right - 150, y: top + 12, class: "legend-train" }, svg, "\u2014 train loss");
    if (m.val.length) svgEl("text", { x: W - right - 150, y: top + 28, class: "legend-val" }, svg, "\u2014 validation loss");
  }

  // ---- everything for one analysis -----------------------------------------------------------
  function renderAnalysis() {
    const a = state.analysis;
    state.layer = Math.min(state.layer, a.attention.length - 1);
    state.head = Math.min(state.head, a.attention[0].length - 1);
    if (state.hover !== null && state.hover >= a.tokens.length) state.hover = null;
    renderTokens();
    renderAttentionGrid();
    renderHeadLines();
    renderBars();
    renderLens();
    renderTrace();
    document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
  }

  // ---- talking to the server (served page only) ----------------------------------------------
  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error(`the explorer's server does not answer (${e.message}); is \`minigpt explore\` still running?`);
    }
    const data = await response.json().catch(() => ({ error: `the server answered ${response.status} without JSON` }));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  async function busy(label, work) {
    if (state.busy) return;
    state.busy = true;
    $("analyze").disabled = true;
    $("generate").disabled = true;
    setStatus(label);
    try {
      await work();
      showError("");
      setStatus("");
    } catch (e) {
      showError(e.message);
      setStatus("");
    } finally {
      state.busy = false;
      $("analyze").disabled = false;
      $("generate").disabled = false;
    }
  }

  function analyze() {
    if (state.mode === "static") return Promise.resolve();
    const prompt = $("prompt").value;
    return busy("running the model\u2026", async () => {
      const a = await api("api/analyze", { prompt });
      state.analysis = a;
      state.newest = null;
      renderAnalysis();
    });
  }

  function generateOne() {
    let settings;
    try {
      settings = readSettings();
    } catch (e) {
      $("controls-error").textContent = e.message;
      return Promise.resolve();
    }
    return busy("sampling one token\u2026", async () => {
      const ids = state.analysis.tokens.map((t) => t.id);
      const answer = await api("api/generate", { ids, temperature: settings.temperature, top_k: settings.topK,
                                                 top_p: settings.topP, seed: settings.seed });
      state.analysis = answer.analysis;
      state.newest = ids.length;
      $("prompt").value = answer.analysis.text;
      if (settings.seed !== null) $("seed").value = String(settings.seed + 1);  // a fresh draw next time
      renderAnalysis();
      setStatus(`appended ${JSON.stringify(state.info.vocab[answer.token])} (id ${answer.token}), drawn with seed ${settings.seed}`);
    });
  }

  // ---- start ---------------------------------------------------------------------------------
  function wireControls() {
    const range = $("temperature-range");
    const number = $("temperature");
    range.addEventListener("input", () => { number.value = range.value; if (state.analysis) renderBars(); });
    number.addEventListener("input", () => {
      if (number.value !== "" && Number(number.value) <= 2) range.value = number.value;
      if (state.analysis) renderBars();
    });
    for (const id of ["top-k", "top-p"]) {
      $(id).addEventListener("input", () => { if (state.analysis) renderBars(); });
    }
    $("prompt-form").addEventListener("submit", (ev) => { ev.preventDefault(); analyze(); });
    $("prompt").addEventListener("keydown", (ev) => {  // Ctrl+Enter analyzes; Enter is a newline
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); analyze(); }
    });
    $("generate").addEventListener("click", () => { if (state.analysis) generateOne(); });
  }

  async function start() {
    wireControls();
    if (boot.prompt !== null && boot.prompt !== undefined) $("prompt").value = boot.prompt;
    if (state.mode === "static") {
      $("prompt").readOnly = true;
      $("analyze").hidden = true;
      $("generate").disabled = true;
      $("generate").title = "a static file shows the prompt as written; `minigpt explore --ckpt DIR` serves a page that generates";
      renderInfo();
      renderAnalysis();
      return;
    }
    await busy("loading the model\u2026", async () => {
      state.info = await api("api/info");
      renderInfo();
    });
    if (!state.info) return;
    if ($("prompt").value) {
      await analyze();
    } else {
      setStatus("Type a prompt and press Analyze.");
    }
  }

  // for the tests and the curious: the formulas and the state, from the browser's console
  window.minigptExplore = { filterLogits, nextTokenProbabilities, state, selectHead, setHover };
  start();
})();
