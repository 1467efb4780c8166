// soundsearch web page: plain JavaScript, no build step, no network beyond this server.
// State lives in the URL hash (#q=...&mode=...&k=... or #similar=ID) so back/forward work.
"use strict";

const $ = (sel) => document.querySelector(sel);

function formatTime(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function renderResult(result) {
  const node = $("#result-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = result.id;
  node.querySelector(".name").textContent = result.name;
  node.querySelector(".folder").textContent = result.folder ? `${result.folder}/` : result.root;
  node.querySelector(".folder").title = result.path;
  node.querySelector(".score").textContent = result.score.toFixed(4);
  const audio = node.querySelector("audio");
  // Media fragment: the player opens at the best segment.
  audio.src = `/api/audio/${result.id}#t=${result.time.toFixed(2)}`;
  audio.dataset.start = result.time;
  node.querySelector(".time").textContent = `best at ${formatTime(result.time)}`;
  node.querySelector("a.more").href = `#similar=${result.id}`;
  return node;
}

function render(data, label) {
  const list = $("#results");
  list.replaceChildren(...data.results.map(renderResult));
  const channels = data.channels.join(" + ") || "none";
  $("#summary").textContent =
    `${data.results.length} results for ${label} (${data.mode}: ${channels}, ${data.took_ms} ms)`;
  $("#notes").replaceChildren(
    ...data.notes.map((text) => Object.assign(document.createElement("p"), { textContent: text })),
  );
}

async function run() {
  const params = new URLSearchParams(location.hash.slice(1));
  showError("");
  try {
    if (params.has("similar")) {
      const id = params.get("similar");
      const data = await getJSON(`/api/similar?id=${encodeURIComponent(id)}&k=${$("#k").value}`);
      render(data, `sounds like “${data.query.split("/").pop()}”`);
    } else if (params.get("q")) {
      $("#q").value = params.get("q");
      if (params.get("mode")) $("#mode").value = params.get("mode");
      if (params.get("k")) $("#k").value = params.get("k");
      const query = new URLSearchParams({ q: $("#q").value, mode: $("#mode").value, k: $("#k").value });
      const data = await getJSON(`/api/search?${query}`);
      render(data, `“${data.query}”`);
    }
  } catch (err) {
    showError(err.message);
  }
}

async function loadStatus() {
  try {
    const st = await getJSON("/api/status");
    const model = st.acoustic_model ? "acoustic model loaded" : "metadata only";
    $("#status").textContent =
      `${st.files} files, ${st.segments} segments, ${st.errors} errors · ${model}`;
  } catch (err) {
    $("#status").textContent = `status unavailable: ${err.message}`;
  }
}

$("#search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams({ q: $("#q").value.trim(), mode: $("#mode").value, k: $("#k").value });
  if (!params.get("q")) return;
  const hash = `#${params}`;
  if (location.hash === hash) run();
  else location.hash = hash;
});

// Only one clip plays at a time.
document.addEventListener("play", (event) => {
  document.querySelectorAll("audio").forEach((a) => { if (a !== event.target) a.pause(); });
}, true);

window.addEventListener("hashchange", run);
loadStatus();
run();
