"use strict";
// The page's state, its settings (controls and URL), and the calls to the server: runs and chunks.

const BACKEND_COLORS = { numpy: "#1f77b4", torch: "#d62728", jax: "#2ca02c" };
const PAIR_COLORS = { "numpy/torch": "#9467bd", "numpy/jax": "#17becf", "torch/jax": "#ff7f0e" };
const CLASS_COLORS = [[245, 147, 34], [8, 119, 189], [44, 160, 44], [148, 103, 189], [140, 86, 75], [227, 119, 194]];
const $ = (id) => document.getElementById(id);
// Each format's line: float64 solid and thick, float32 dashed and thin, the pure half formats long- and
// short-dashed, the mixed formats dotted.
const FORMAT_STYLE = {
  float64: { width: 2.2, dash: [], border: "solid" },
  float32: { width: 1, dash: [5, 3], border: "dashed" },
  bfloat16: { width: 1.3, dash: [10, 3], border: "groove" },
  float16: { width: 1.3, dash: [2, 2], border: "ridge" },
  "bfloat16-mixed": { width: 1.5, dash: [1, 2], border: "dotted" },
  "float16-mixed": { width: 1.5, dash: [6, 2, 1, 2], border: "double" },
};
// "numpy-bfloat16-mixed" -> ["numpy", "bfloat16-mixed"]: the backend, then the format (which may hold a "-")
const laneParts = (lane) => [lane.slice(0, lane.indexOf("-")), lane.slice(lane.indexOf("-") + 1)];

let options = null;            // GET /api/options
let config = {};               // the settings, as the URL and the server spell them
let run = null;                // POST /api/run's reply
let history = {};              // lane -> {steps, train, test}
let parity = {};               // "a/b/dtype" -> {steps, gap, tol}
let chunkStarts = [];
let lastView = null;
let selected = null;           // {kind: "unit", layer, unit} or {kind: "link", layer, i, j}: the panel's subject
let playing = false, busy = false, generation = 0;
window.playground = { curves: {}, errors: [] };   // what the browser test reads

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// ---- settings <-> controls <-> URL ----

function nClasses(dataset, loss) {
  if (dataset === "blobs") return 3;
  return dataset === "spirals" && loss === "softmax_ce" ? 3 : 2;
}

function sizesFrom(hidden, dataset, loss) {
  const k = nClasses(dataset, loss);
  const out = loss === "softmax_ce" ? k : (k === 2 ? 1 : k);
  const widths = hidden.split(",").map((s) => s.trim()).filter((s) => s !== "");
  return ["2", ...widths, String(out)].join(",");
}

function readURL() {
  const query = new URLSearchParams(location.search);
  const model = query.get("model") || options.defaults.model;
  const defaults = { ...options.defaults, ...(options.mode_defaults[model] || {}) };   // a GPT's own
  const c = {};
  for (const [key, value] of Object.entries(defaults)) {
    c[key] = query.has(key) ? query.get(key) : (Array.isArray(value) ? value.join(",") : (value ?? ""));
  }
  return c;
}

function writeURL() {
  const query = new URLSearchParams();   // your CSV stays out: too long for a URL
  for (const [key, value] of Object.entries(config)) if (value !== "" && key !== "csv") query.set(key, value);
  if (config.model === "gpt" && $("tokens").value) query.set("tokens", $("tokens").value);   // the GPT's input
  history_replace("?" + query.toString());
}
function history_replace(search) { window.history.replaceState(null, "", search); }

function fillControls() {
  for (const el of document.querySelectorAll("[data-field]")) {
    const f = el.dataset.field;
    if (el.tagName === "SELECT" && !el.options.length) {
      for (const name of options.choices[f]) el.add(new Option(name, name));
    }
    el.value = f === "hidden" ? config.sizes.split(",").slice(1, -1).join(",") : config[f];
  }
  for (const [group, key] of [["dtypes", "dtypes"], ["backends", "backends"]]) {
    const box = $(group);
    box.innerHTML = "";
    const chosen = config[key].split(",");
    for (const name of options.choices[key]) {
      const installed = key !== "backends" || options.installed.includes(name);
      const label = document.createElement("label");
      label.className = "check";
      label.innerHTML = `<input type="checkbox" value="${name}" ${chosen.includes(name) && installed ? "checked" : ""} ${installed ? "" : "disabled"}>${name}`;
      label.title = installed ? "" : `${name} is not installed here`;
      label.querySelector("input").addEventListener("change", onChange);
      box.append(label);
    }
  }
}

function readControls() {
  const c = { ...config };
  for (const el of document.querySelectorAll("[data-field]")) {
    if (el.dataset.field !== "hidden") c[el.dataset.field] = el.value.trim();
  }
  c.sizes = sizesFrom(document.querySelector('[data-field="hidden"]').value, c.dataset, c.loss);
  for (const key of ["dtypes", "backends"]) {
    c[key] = [...$(key).querySelectorAll("input:checked")].map((el) => el.value).join(",");
  }
  return c;
}

function onChange(e) {
  const before = config.model;
  config = readControls();
  if (config.model !== before) {   // another model: its own defaults for what the two share
    config = { ...config, ...options.mode_defaults[config.model] };
    fillControls();
    config = readControls();
  }
  writeURL();
  if (!e?.target?.hasAttribute?.("data-live")) newRun();   // "stop at loss" changes no run
}

function activationOf(layer) {   // one for every hidden layer, or one per layer
  const a = run.config.activation;
  return Array.isArray(a) ? a[layer] : a;
}

// ---- talking to the server ----

function markBad(field) {
  for (const el of document.querySelectorAll(".bad")) el.classList.remove("bad");
  const name = field === "sizes" ? "hidden" : field;
  const el = document.querySelector(`[data-field="${name}"]`) || $(name);
  if (el) el.classList.add("bad");
}

async function newRun() {
  const mine = ++generation;
  setPlaying(false);
  status("building the run…");
  let reply;
  try {
    const response = await fetch("/api/run", { method: "POST", body: JSON.stringify({ config }) });
    reply = await response.json();
    if (!response.ok) { markBad(reply.field); status(reply.error, true); run = null; return; }
  } catch (e) { status(`server not reachable: ${e}`, true); return; }
  if (mine !== generation) return;
  markBad(null);
  run = reply;
  history = {}; parity = {}; chunkStarts = [];
  for (const s of run.start) {
    history[s.lane] = { steps: [0], train: [s.train_loss], test: [s.test_loss], trainAcc: [s.train_accuracy], testAcc: [s.test_accuracy] };
  }
  $("own-data").open ||= Boolean(config.csv);
  $("csv").value = config.csv || $("csv").value;
  document.querySelector('[data-field="dataset"]').disabled = Boolean(config.csv);
  for (const sel of [$("view-lane"), $("export-lane")]) {
    const keep = sel.value;
    sel.innerHTML = "";
    for (const lane of run.lanes) sel.add(new Option(lane, lane));
    if (run.lanes.includes(keep)) sel.value = keep;
  }
  updateExports();
  lastView = run.view;
  document.body.dataset.mode = run.mode;
  const tolerance = `tolerance: ${Object.entries(run.tolerance_kind).map(([d, k]) => d + " " + k).join(", ")}`;
  $("counter").textContent = "step 0";
  if (run.mode === "gpt") {
    if (!$("tokens").value || $("tokens").dataset.task !== run.config.task + run.config.length) $("tokens").value = run.example;
    $("tokens").dataset.task = run.config.task + run.config.length;
    $("examples").innerHTML = "<option value=''>—</option>" + run.examples.map((e) => `<option>${e.replace(/</g, "&lt;")}</option>`).join("");
    status(`${run.config.task}: ${run.n_train} training sequences of ${run.config.seq_len} tokens · ${run.lanes.length} lanes · ${tolerance}`);
    drawAll();
    await drawAttention();
    return;
  }
  if (selected && !validSelection(selected)) selected = null;
  $("sample").max = run.train.y.length - 1;
  if (Number($("sample").value) >= run.train.y.length) $("sample").value = 0;
  status(`${run.train.y.length} train / ${run.test.y.length} test points · ${run.lanes.length} lanes · ${tolerance}`);
  drawAll();
  await inspect();
}

async function* jsonLines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      yield JSON.parse(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

async function chunk(steps) {
  if (!run || busy) return;
  busy = true;
  const mine = generation;
  try {
    const body = { run: run.run, view: $("view-lane").value };
    if (steps) body.steps = steps;
    const response = await fetch("/api/step", { method: "POST", body: JSON.stringify(body) });
    if (!response.ok) { const e = await response.json(); status(e.error, true); setPlaying(false); return; }
    for await (const item of jsonLines(response)) {
      if (mine !== generation) return;
      if (item.type === "lane") addLane(item);
      else if (item.type === "parity") addParity(item);
      else if (item.type === "view") { lastView = item; }
      else if (item.type === "error") { status(item.error, true); setPlaying(false); }
      else if (item.type === "done") {
        $("counter").textContent = `step ${item.step}`;
        chunkStarts.push(item.step);
        drawAll();
        if (run.mode === "gpt") await drawAttention(); else await inspect();
        stopAtTarget(item.step);
      }
    }
  } catch (e) { status(`lost the server: ${e}`, true); setPlaying(false); }
  finally { busy = false; }
}

function addLane(item) {
  const h = history[item.lane];
  item.steps.forEach((s, i) => {
    if (h.steps.length && h.steps[h.steps.length - 1] === s) return;   // a chunk starts where the last ended
    h.steps.push(s); h.train.push(item.train_loss[i]); h.test.push(item.test_loss[i]);
    h.trainAcc.push(item.train_accuracy[i]); h.testAcc.push(item.test_accuracy[i]);
  });
  if (item.diverged_at !== null) { h.diverged = item.diverged_at; status(`${item.lane} diverged at step ${item.diverged_at}`, true); }
}

function addParity(item) {
  for (const p of item.pairs) {
    const key = `${p.a}/${p.b}/${p.dtype}`;
    const g = (parity[key] ||= { a: p.a, b: p.b, dtype: p.dtype, steps: [], gap: [], tol: [] });
    p.steps.forEach((s, i) => {
      if (g.steps.length && g.steps[g.steps.length - 1] === s) return;
      g.steps.push(s); g.gap.push(p.gap_eps[i]); g.tol.push(p.tol_eps[i]);
    });
  }
}

function updateExports() {
  if (!run) return;
  $("export-npz").href = `/api/export.npz?run=${run.run}&lane=${$("export-lane").value}`;
  $("export-npz").download = `playground-${$("export-lane").value}.npz`;
  $("export-config").href = `/api/config.json?run=${run.run}`;
}

function setPlaying(on) {
  playing = on;
  $("play").textContent = on ? "❚❚ pause" : "▶ play";
  if (on) loop();
}

async function loop() {
  while (playing) {
    await chunk();
    await new Promise((r) => setTimeout(r, 10));
  }
}

