"use strict";
// Drawing: the heat maps, the boundary, the network, and the loss and parity charts.

// ---- drawing ----

function drawAll() {
  if (!run) return;
  if (run.mode !== "gpt") { drawBoundary(); drawNetwork(); }
  drawLoss();
  drawParity();
  const lane = $("view-lane").value, h = history[lane];
  if (h) {
    const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(4));
    $("train-loss").textContent = fmt(h.train[h.train.length - 1]);
    $("test-loss").textContent = fmt(h.test[h.test.length - 1]);
    const last = (a) => a[a.length - 1], pct = (v) => `${(100 * v).toFixed(1)} %`;
    $("accuracy").innerHTML = last(h.trainAcc) === null || last(h.trainAcc) === undefined ? ""
      : ` · accuracy train <b id="train-accuracy">${pct(last(h.trainAcc))}</b> · test <b id="test-accuracy">${pct(last(h.testAcc))}</b>`;
  }
}

function heatmap(canvas, values, res, colour) {
  // values: res*res numbers, row by row from the top; colour(v) -> [r, g, b]
  const off = document.createElement("canvas");
  off.width = off.height = res;
  const ctx = off.getContext("2d"), img = ctx.createImageData(res, res);
  for (let i = 0; i < res * res; i++) {
    const [r, g, b] = colour(values ? values[i] : null, i);
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const c = canvas.getContext("2d");
  c.imageSmoothingEnabled = true;
  c.drawImage(off, 0, 0, canvas.width, canvas.height);
}

function diverging(v) {      // -1 .. 1 -> orange .. white .. blue
  const t = Math.max(-1, Math.min(1, v ?? 0));
  const [c, a] = t >= 0 ? [CLASS_COLORS[1], t] : [CLASS_COLORS[0], -t];
  return c.map((x) => Math.round(255 - (255 - x) * a * 0.9));
}

function drawBoundary(canvas = $("boundary"), points = true) {
  const v = lastView, res = v.resolution, k = v.probs.length;
  heatmap(canvas, null, res, (_, i) => {
    let rgb = [0, 0, 0];
    for (let c = 0; c < k; c++) rgb = rgb.map((x, j) => x + (v.probs[c][i] ?? 0) * CLASS_COLORS[c][j]);
    return rgb.map((x) => Math.round(255 - (255 - x) * 0.55));
  });
  if (!points) return;
  const ctx = canvas.getContext("2d"), [x0, x1, y0, y1] = run.extent;
  const px = (x) => ((x - x0) / (x1 - x0)) * canvas.width, py = (y) => ((y1 - y) / (y1 - y0)) * canvas.height;
  const chosen = run.train.X[Number($("sample").value)];
  if (chosen) {               // the panel's sample: a ring
    ctx.beginPath(); ctx.arc(px(chosen[0]), py(chosen[1]), 7, 0, 2 * Math.PI);
    ctx.strokeStyle = "#222"; ctx.lineWidth = 2; ctx.stroke();
  }
  for (const [set, filled] of [[run.train, true], [run.test, false]]) {
    set.X.forEach(([x, y], i) => {
      const col = `rgb(${CLASS_COLORS[set.y[i]].join(",")})`;
      ctx.beginPath();
      ctx.arc(px(x), py(y), 3.2, 0, 2 * Math.PI);
      ctx.fillStyle = filled ? col : "#fff";
      ctx.strokeStyle = filled ? "#fff" : col;
      ctx.lineWidth = filled ? 1 : 1.6;
      ctx.fill(); ctx.stroke();
    });
  }
}

function drawNetwork() {
  const box = $("network"), svg = $("links");
  for (const el of box.querySelectorAll("canvas, .colhead")) el.remove();
  svg.innerHTML = "";
  const sizes = run.config.sizes, W = box.clientWidth, H = box.clientHeight, top = 22;
  const cols = sizes.length, node = Math.max(26, Math.min(56, (H - top) / Math.max(...sizes) - 6));
  const xs = sizes.map((_, l) => 20 + node / 2 + (l * (W - 40 - node)) / Math.max(1, cols - 1));
  const ys = sizes.map((n) => Array.from({ length: n }, (_, j) => top + (H - top) / 2 + (j - (n - 1) / 2) * (node + 6)));
  const params = lastView.params;
  for (let l = 0; l < params.length; l++) {           // links, under the nodes
    const w = params[l].W, big = Math.max(1e-12, ...w.flat().map(Math.abs));
    w.forEach((row, i) => row.forEach((wij, j) => {
      const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("x1", xs[l]); line.setAttribute("y1", ys[l][i]);
      line.setAttribute("x2", xs[l + 1]); line.setAttribute("y2", ys[l + 1][j]);
      line.setAttribute("stroke", wij >= 0 ? "var(--pos)" : "var(--neg)");
      line.setAttribute("stroke-width", (0.3 + 5 * Math.abs(wij) / big).toFixed(2));
      line.setAttribute("stroke-opacity", 0.25 + 0.6 * Math.abs(wij) / big);
      const hit = line.cloneNode();   // a wider, invisible line to click and hover
      hit.setAttribute("stroke-width", 8); hit.setAttribute("stroke-opacity", 0);
      hit.setAttribute("pointer-events", "stroke"); hit.setAttribute("class", "hit");
      hit.dataset.link = `${l},${i},${j}`;
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = `layer${l}.W[${i}, ${j}] = ${wij.toPrecision(4)} (click: over the run, and its gradient)`;
      hit.append(title);
      hit.addEventListener("click", () => select({ kind: "link", layer: l, i, j }));
      svg.append(line, hit);
    }));
  }
  const res = lastView.hidden_resolution;
  sizes.forEach((n, l) => {
    const head = document.createElement("div");
    head.className = "colhead";
    head.style.left = xs[l] + "px";
    head.textContent = l === 0 ? "input" : l === cols - 1 ? "output" : `hidden ${l} (${activationOf(l - 1)})`;
    box.append(head);
    for (let j = 0; j < n; j++) {
      const c = document.createElement("canvas");
      c.width = c.height = Math.round(node);
      c.style.left = xs[l] - node / 2 + "px";
      c.style.top = ys[l][j] - node / 2 + "px";
      box.append(c);
      if (l === 0) {          // the input itself: x1 or x2 across the plane
        const [x0, x1, y0, y1] = run.extent, lo = j === 0 ? x0 : y0, hi = j === 0 ? x1 : y1;
        heatmap(c, null, res, (_, i) => {
          const [r, q] = [Math.floor(i / res), i % res];
          const v = j === 0 ? x0 + (q / (res - 1)) * (x1 - x0) : y1 - (r / (res - 1)) * (y1 - y0);
          return diverging((2 * (v - lo)) / (hi - lo) - 1);
        });
      } else if (l === cols - 1) {
        drawBoundary(c, false);
      } else {
        const a = lastView.hidden[l - 1][j], big = Math.max(1e-12, ...a.map((x) => Math.abs(x ?? 0)));
        const scale = activationOf(l - 1) === "tanh" ? 1 : big;
        heatmap(c, a, res, (v) => diverging((v ?? 0) / scale));
      }
      if (l > 0) {            // a unit: its bias on hover, its numbers on click
        const what = l === cols - 1 ? `output unit ${j}` : `hidden ${l}, unit ${j}`;
        c.title = `${what}: bias b = ${params[l - 1].b[j].toPrecision(4)} (click: its forward and backward)`;
        c.classList.add("unit");
        c.dataset.unit = `${l - 1},${j}`;
        if (selected?.kind === "unit" && selected.layer === l - 1 && selected.unit === j) c.classList.add("selected");
        c.addEventListener("click", () => select({ kind: "unit", layer: l - 1, unit: j }));
      }
    }
  });
}

function chart(canvas, series, { log = false, yLabel = "" } = {}) {
  // series: [{steps, values, colour, dash, width, alpha}]; returns how many points each drew
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 44, B = 18, T = 6, R = 6;
  ctx.clearRect(0, 0, W, H);
  const tx = (v) => (log ? Math.log10(Math.max(v, 1e-2)) : v);
  let xmax = 1, ymin = Infinity, ymax = -Infinity;
  for (const s of series) s.steps.forEach((x, i) => {
    const v = s.values[i];
    if (v === null || !isFinite(v)) return;
    xmax = Math.max(xmax, x); ymin = Math.min(ymin, tx(v)); ymax = Math.max(ymax, tx(v));
  });
  if (!isFinite(ymin)) { ymin = 0; ymax = 1; }
  if (!log) ymin = Math.min(0, ymin);
  if (ymax - ymin < 1e-9) ymax = ymin + 1;
  const X = (x) => L + (x / xmax) * (W - L - R), Y = (v) => T + (1 - (tx(v) - ymin) / (ymax - ymin)) * (H - T - B);
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#777"; ctx.font = "10px system-ui"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  ctx.textAlign = "right";
  if (log) for (let e = Math.ceil(ymin); e <= ymax; e++) ctx.fillText(`1e${e}`, L - 3, Y(10 ** e) + 3);
  else for (const f of [0, 0.5, 1]) { const v = ymin + f * (ymax - ymin); ctx.fillText(v.toPrecision(2), L - 3, Y(v) + 3); }
  ctx.textAlign = "center";
  ctx.fillText(`step ${xmax}`, W - 30, H - 4);
  ctx.fillText(yLabel, L + 30, H - 4);
  const drawn = {};
  for (const s of series) {
    ctx.beginPath(); ctx.setLineDash(s.dash || []); ctx.lineWidth = s.width || 1.5;
    ctx.strokeStyle = s.colour; ctx.globalAlpha = s.alpha ?? 1;
    let n = 0, pen = false;
    s.steps.forEach((x, i) => {
      const v = s.values[i];
      if (v === null || !isFinite(v)) { pen = false; return; }
      pen ? ctx.lineTo(X(x), Y(v)) : ctx.moveTo(X(x), Y(v));
      pen = true; n++;
    });
    ctx.stroke(); ctx.setLineDash([]); ctx.globalAlpha = 1;
    if (s.name) drawn[s.name] = n;
  }
  return { X, drawn };
}

function drawLoss() {
  const series = [];
  for (const [lane, h] of Object.entries(history)) {
    const [backend, dtype] = laneParts(lane), thin = dtype !== "float64";
    const style = { colour: BACKEND_COLORS[backend], width: FORMAT_STYLE[dtype].width, alpha: thin ? 0.75 : 0.9 };
    series.push({ name: lane, steps: h.steps, values: h.train, ...style });
    series.push({ name: lane + " test", steps: h.steps, values: h.test, dash: [4, 3], ...style });
  }
  const { X, drawn } = chart($("loss"), series, { yLabel: "loss" });
  const ctx = $("loss").getContext("2d");
  if (chunkStarts.length <= 200) {
    ctx.strokeStyle = "#bbb";
    for (const s of chunkStarts) { ctx.beginPath(); ctx.moveTo(X(s), 164); ctx.lineTo(X(s), 152); ctx.stroke(); }
  }
  window.playground.curves = drawn;
  $("loss-legend").innerHTML = Object.keys(history).map((lane) => {
    const [b, d] = laneParts(lane);
    return `<span><i class="swatch" style="border-color:${BACKEND_COLORS[b]};border-top-width:${Math.round(FORMAT_STYLE[d].width)}px"></i>${lane}</span>`;
  }).join("");
}

function drawParity() {
  const series = [], tols = {};
  for (const [key, g] of Object.entries(parity)) {
    const colour = PAIR_COLORS[`${g.a}/${g.b}`] || "#555";
    const dash = FORMAT_STYLE[g.dtype].dash;
    series.push({ name: key, steps: g.steps, values: g.gap.map((v) => Math.max(v, 0.01)), colour, dash, width: 1.6 });
    tols[g.dtype] ||= { name: "tolerance " + g.dtype, steps: g.steps, values: g.tol, colour: "#999", dash, width: 1 };
  }
  chart($("parity"), [...Object.values(tols), ...series], { log: true, yLabel: "ε" });
  window.playground.parity = Object.keys(parity);
  const last = (a) => a[a.length - 1];
  $("parity-legend").innerHTML = Object.entries(parity).map(([key, g]) =>
    `<span><i class="swatch" style="border-color:${PAIR_COLORS[`${g.a}/${g.b}`]};border-top-style:${FORMAT_STYLE[g.dtype].border}"></i>${g.a}–${g.b} ${g.dtype}: ${last(g.gap).toPrecision(2)}ε (tol ${last(g.tol).toPrecision(2)}ε)</span>`
  ).join("") || "needs two backends";
}

function stopAtTarget(step) {
  const target = Number(config.target_loss), lane = $("view-lane").value, h = history[lane];
  if (!playing || !config.target_loss || !h) return;
  const loss = h.train[h.train.length - 1];
  if (loss !== null && loss <= target) {
    setPlaying(false);
    status(`${lane} reached the target train loss ${target} (${loss.toFixed(4)}) at step ${step}: paused`);
  }
}

$("csv-use").addEventListener("click", () => { config = { ...readControls(), csv: $("csv").value }; writeURL(); newRun(); });
$("csv-clear").addEventListener("click", () => { config = { ...readControls(), csv: "" }; writeURL(); newRun(); });
$("csv-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  if (file.size > 48 * 1024) { status(`${file.name} is larger than 48 KiB`, true); return; }
  $("csv").value = await file.text();
  $("csv-use").click();
});

