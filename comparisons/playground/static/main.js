"use strict";
// Start: the options from the server, the settings from the URL, the first run; the controls' events.

// ---- start ----

window.addEventListener("error", (e) => window.playground.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.playground.errors.push(String(e.reason)));
$("play").addEventListener("click", () => setPlaying(!playing));
$("step").addEventListener("click", async () => { setPlaying(false); await chunk(1); });
$("reset").addEventListener("click", () => newRun());
$("view-lane").addEventListener("change", async () => {
  const response = await fetch(`/api/view.json?run=${run.run}&lane=${$("view-lane").value}`);
  if (response.ok) { lastView = await response.json(); drawAll(); await drawAttention(); }
});
$("export-lane").addEventListener("change", updateExports);
for (const el of document.querySelectorAll("[data-field]")) el.addEventListener("change", onChange);
window.addEventListener("resize", () => run && run.mode !== "gpt" && drawNetwork());

(async () => {
  try {
    options = await (await fetch("/api/options")).json();
  } catch (e) { status(`server not reachable: ${e}`, true); return; }
  config = readURL();
  const tokens = new URLSearchParams(location.search).get("tokens");
  if (tokens) { $("tokens").value = tokens; $("tokens").dataset.task = config.task + config.length; }
  if (options.csv && !config.csv) config.csv = options.csv;   // the command's --csv points
  fillControls();
  config = readControls();
  writeURL();
  await newRun();
})();
