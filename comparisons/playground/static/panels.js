"use strict";
// The panels: the GPT's attention maps, live, and the MLP's 'inside a unit'.

// ---- GPT mode: attention, live ----

async function drawAttention() {
  if (!run || run.mode !== "gpt") return;
  const dtype = laneParts($("view-lane").value)[1];
  const lanes = run.lanes.filter((lane) => laneParts(lane)[1] === dtype);
  const text = $("tokens").value;
  const replies = [];
  for (const lane of lanes) {
    const response = await fetch(`/api/attention.json?run=${run.run}&lane=${lane}&tokens=${encodeURIComponent(text)}`);
    const reply = await response.json();
    if (!response.ok) { $("tokens").classList.add("bad"); $("tokens-info").textContent = reply.error; return; }
    replies.push(reply);
  }
  $("tokens").classList.remove("bad");
  window.playground.attention = replies;
  const first = replies[0], L = first.maps.length, H = first.maps[0].length, t = first.tokens.length;
  const cell = Math.max(8, Math.min(22, Math.floor(150 / t)));
  $("tokens-info").textContent = first.target ? `reads ${first.tokens.join(" ")}; the answer is predicted at positions ${first.answer_positions[0]}–${first.answer_positions.at(-1)}` : `reads ${first.tokens.join("")}`;
  const box = $("maps");
  box.style.gridTemplateColumns = `110px repeat(${L * H}, auto)`;
  box.innerHTML = `<div></div>` + Array.from({ length: L * H }, (_, k) => `<div class="note">layer ${Math.floor(k / H) + 1}, head ${(k % H) + 1}</div>`).join("");
  for (const r of replies) {
    const backend = r.lane.split("-")[0];
    const right = r.target ? ` · ${r.correct}/${r.answer_positions.length} right` : "";
    const who = document.createElement("div");
    who.innerHTML = `<div class="who" style="color:${BACKEND_COLORS[backend]}">${r.lane}</div><div class="tokens note">→ ${r.answer_positions.length ? r.answer_positions.map((i) => r.prediction[i]).join("") : r.prediction.join("")}${right}</div>`;
    box.append(who);
    r.maps.forEach((layer, l) => layer.forEach((P, h) => {
      const c = document.createElement("canvas");
      c.width = c.height = cell * t;
      c.dataset.map = `${r.lane},${l},${h}`;
      c.title = `${r.lane}, layer ${l + 1}, head ${h + 1}: row = query, column = key`;
      const ctx = c.getContext("2d");
      P.forEach((row, i) => row.forEach((p, j) => {
        const v = Math.round(255 * (1 - p));
        ctx.fillStyle = j > i ? "#111" : `rgb(${v},${v},255)`;
        ctx.fillRect(j * cell, i * cell, cell, cell);
      }));
      box.append(c);
    }));
  }
}

$("tokens").addEventListener("change", () => { writeURL(); drawAttention(); });
$("examples").addEventListener("change", () => {
  if (!$("examples").value) return;
  $("tokens").value = $("examples").value;
  writeURL();
  drawAttention();
});

// ---- inside a unit: the gradient panel ----

function validSelection(sel) {
  const sizes = run.config.sizes;
  if (sel.layer >= sizes.length - 1) return false;
  return sel.kind === "unit" ? sel.unit < sizes[sel.layer + 1] : sel.i < sizes[sel.layer] && sel.j < sizes[sel.layer + 1];
}

async function select(sel) {
  selected = sel;
  drawNetwork();
  await inspect();
}

const num = (v) => (v === null || v === undefined ? "–" : v === 0 ? "0" : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(4) : v.toPrecision(6));
const gap = (g) => (g === null || g === undefined ? "–" : g === 0 ? "0" : `${g.toPrecision(2)}ε`);

async function inspect() {
  if (!run || !selected || run.mode === "gpt") return;
  const sample = Number($("sample").value) || 0;
  $("sample-info").textContent = `x = (${run.train.X[sample].map((v) => v.toFixed(3)).join(", ")}), class ${run.train.y[sample]}`;
  const url = selected.kind === "unit"
    ? `/api/inspect.json?run=${run.run}&lane=${$("view-lane").value}&layer=${selected.layer}&unit=${selected.unit}&sample=${sample}`
    : `/api/link.json?run=${run.run}&layer=${selected.layer}&i=${selected.i}&j=${selected.j}`;
  let reply;
  try {
    const response = await fetch(url);
    reply = await response.json();
    if (!response.ok) { $("inspect").textContent = reply.error; return; }
  } catch (e) { $("inspect").textContent = `lost the server: ${e}`; return; }
  window.playground.inspected = reply;
  if (selected.kind === "unit") renderUnit(reply); else renderLink(reply);
}

function renderUnit(r) {
  const names = Object.keys(r.values), last = r.layer === run.config.sizes.length - 2;
  const rows = [
    ["z", "z", "a_in · w_in + b"],
    ["a", "a", last ? "z (the output is linear: a logit)" : `f(z), f = ${r.activation}`],
    ["dL_da", "dL/da", r.formulas.dL_da],
    ["f_prime", "f′(z)", last ? "1" : "f's slope at z"],
    ["dL_dz", "dL/dz", "dL/da · f′(z)"],
    ["db", "dL/db", "dL/dz"],
  ];
  const inputs = r.values[names[0]].a_in.length;
  for (let k = 0; k < inputs; k++) rows.push([`dW:${k}`, `dL/dw${k}`, `a_in[${k}] · dL/dz   (w${k} = ${num(r.values[names[0]].w_in[k])})`]);
  const value = (name, key) => (key.startsWith("dW:") ? r.values[name].dW[Number(key.slice(3))] : r.values[name][key]);
  const gapOf = (name, key) => (r.gap_eps[name] ? (key.startsWith("dW:") ? r.gap_eps[name].dW : r.gap_eps[name][key]) : null);
  const head = `<tr><th>${last ? "output" : `hidden ${r.layer + 1}`} unit ${r.unit}</th><th></th>${names.map((n) => `<th style="color:${BACKEND_COLORS[n]}">${n}</th><th>gap</th>`).join("")}</tr>`;
  const body = rows.map(([key, label, formula]) =>
    `<tr><td>${label}</td><td class="formula">${formula}</td>${names.map((n) => `<td>${num(value(n, key))}</td><td class="gap">${n === "numpy" ? "" : gap(gapOf(n, key))}</td>`).join("")}</tr>`
  ).join("");
  const losses = names.map((n) => `${n} ${num(r.loss[n])}`).join(", ");
  $("inspect").innerHTML = `<div>sample ${r.sample}, ${r.dtype}, step ${r.step}, params of ${r.lane} on every backend · the loss of this one sample: ${losses} · gap: to NumPy, in ε·max|value| (dW: over all its inputs)</div><table class="inspect">${head}${body}</table>`;
}

function renderLink(r) {
  const lanes = Object.entries(r.lanes);
  const rows = lanes.map(([lane, h]) =>
    `<tr><td style="color:${BACKEND_COLORS[lane.split("-")[0]]}">${lane}</td><td>${num(h.values[0])}</td><td>${num(h.values[h.values.length - 1])}</td><td>${num(h.gradient)}</td></tr>`
  ).join("");
  $("inspect").innerHTML = `<div>${r.name}: the weight from unit ${r.i} of ${r.layer === 0 ? "the input" : `hidden ${r.layer}`} into unit ${r.j} of the next layer, at every chunk start and now; its gradient of the full training loss now</div>
    <table class="inspect"><tr><th>lane</th><th>at step 0</th><th>now (step ${r.step})</th><th>dL/dw now</th></tr>${rows}</table>
    <canvas id="link-chart" width="640" height="130"></canvas>`;
  chart($("link-chart"), lanes.map(([lane, h]) => ({ name: lane, steps: h.steps, values: h.values, colour: BACKEND_COLORS[lane.split("-")[0]], dash: FORMAT_STYLE[laneParts(lane)[1]].dash, width: 1.6 })), { yLabel: "w" });
}

$("sample").addEventListener("change", () => { drawBoundary(); inspect(); });
$("boundary").addEventListener("click", (e) => {   // the nearest training point becomes the sample
  if (!run || run.mode === "gpt") return;
  const box = $("boundary").getBoundingClientRect(), [x0, x1, y0, y1] = run.extent;
  const x = x0 + ((e.clientX - box.left) / box.width) * (x1 - x0), y = y1 - ((e.clientY - box.top) / box.height) * (y1 - y0);
  let best = 0, bestD = Infinity;
  run.train.X.forEach(([a, b], i) => { const d = (a - x) ** 2 + (b - y) ** 2; if (d < bestD) { bestD = d; best = i; } });
  $("sample").value = best;
  drawBoundary();
  inspect();
});
document.addEventListener("keydown", (e) => {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
  if (e.key === " ") { e.preventDefault(); setPlaying(!playing); }
  else if (e.key === "ArrowRight") { e.preventDefault(); setPlaying(false); chunk(1); }
});

