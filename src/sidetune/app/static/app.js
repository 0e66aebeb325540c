// sidetune serve: the page. Two views, routed by the URL hash: #live, #browse, #browse/q/<qid>.
"use strict";

const $ = (id) => document.getElementById(id);
const ROW_LIMIT = 250; // rows drawn at a time; "show more" appends the next ones (filters see all)
const perf = { lastFilterMs: null, loadMs: null }; // read by the browser tests and bench
window.__sidetune = perf;

async function api(path, opts) {
  const resp = await fetch(path, opts);
  let body;
  try { body = await resp.json(); } catch (e) { body = { error: `HTTP ${resp.status} ${resp.statusText}` }; }
  if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
  return body;
}

function show(el, on) { el.hidden = !on; }
function fmt(x, d = 1) { return Number(x).toFixed(d); }
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

let info = null;

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

function route() {
  const hash = location.hash || (info.live ? "#live" : "#browse");
  const live = hash.startsWith("#live");
  show($("view-live"), live);
  show($("view-browse"), !live);
  $("tab-live").classList.toggle("active", live);
  $("tab-browse").classList.toggle("active", !live);
  if (live) { redrawLive(); return; }
  const m = hash.match(/^#browse\/q\/(.+)$/);
  if (m) openQuery(decodeURIComponent(m[1]));
  else showList();
}

// ---------------------------------------------------------------------------------------------
// Prediction browser
// ---------------------------------------------------------------------------------------------

const B = { rows: [], shown: [], sortKey: null, sortDir: 1, limit: ROW_LIMIT, summary: null, ready: null };

function kindKey() { return `kind@${$("kind-iou").value}`; }

function sortKeyOf(key, kk) {
  if (key === "kind") return (row) => row[kk];
  if (key === "buckets") return (row) => row.buckets.join("+");
  return (row) => row[key];
}

// Time from the user's action to the next frame: filtering, sorting and the DOM update.
function timed(fn) {
  return (...args) => {
    const t0 = performance.now();
    fn(...args);
    requestAnimationFrame(() => { perf.lastFilterMs = performance.now() - t0; });
  };
}

function applyFilters() {
  const q = $("search").value.trim().toLowerCase();
  const kind = $("kind-filter").value;
  const bucket = $("bucket-filter").value;
  const multi = $("multi-gt").checked;
  const kk = kindKey();
  let rows = B.rows.filter((r) => {
    if (q && !(r.query.toLowerCase().includes(q) || r.vid.toLowerCase().includes(q) || String(r.qid) === q)) return false;
    const k = r[kk];
    if (kind === "miss" ? k === "hit" : kind && k !== kind) return false;
    if (bucket && !r.buckets.includes(bucket)) return false;
    if (multi && r.num_gt < 2) return false;
    return true;
  });
  if (B.sortKey) {
    const value = sortKeyOf(B.sortKey, kk), dir = B.sortDir;
    const keyed = rows.map((r) => [value(r), r]); // one key per row, not per comparison
    keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0) * dir);
    rows = keyed.map((p) => p[1]);
  }
  B.shown = rows;
  B.limit = ROW_LIMIT;
  renderRows(0);
}

// Draw rows [from, limit) of the filtered list: from 0 replaces the table, else appends.
function renderRows(from) {
  const tbody = $("queries").tBodies[0];
  const frag = document.createDocumentFragment();
  const limit = Math.min(B.shown.length, B.limit);
  const kk = kindKey();
  for (let i = from; i < limit; i++) {
    const r = B.shown[i];
    const tr = document.createElement("tr");
    tr.dataset.qid = r.qid;
    const k = r[kk];
    tr.append(
      el("td", r.qid), el("td", r.query, { title: r.query }), el("td", r.vid, { title: r.vid }),
      el("td", fmt(r.duration), { class: "num" }), el("td", r.num_gt, { class: "num" }),
      el("td", r.buckets.join(", ")), el("td", fmt(r.top1_iou, 3), { class: "num top1" }),
      el("td", fmt(r.best_iou, 3), { class: "num" }),
      el("td", k, { class: k === "hit" ? "kind-hit kind" : "kind-miss kind" }),
    );
    frag.appendChild(tr);
  }
  if (from === 0) tbody.replaceChildren(frag);
  else tbody.appendChild(frag);
  $("row-count").textContent = `${B.shown.length} of ${B.rows.length} queries`;
  show($("more-rows"), limit < B.shown.length);
}

function renderMetrics(summary) {
  const table = $("metrics");
  table.replaceChildren();
  const brief = summary.metrics.brief;
  const keys = Object.keys(brief);
  for (let i = 0; i < keys.length; i += 8) {
    const head = document.createElement("tr"), vals = document.createElement("tr");
    for (const k of keys.slice(i, i + 8)) {
      head.appendChild(el("th", k));
      // null: NaN in evaluate's output (a length bucket without GT windows)
      vals.appendChild(el("td", brief[k] === null ? "nan" : fmt(brief[k], 2), { "data-metric": k }));
    }
    table.append(head, vals);
  }
  $("browser-files").textContent =
    `${summary.num_queries} queries · ${summary.dataset} · ${summary.pred} against ${summary.gt} ` +
    `(read and scored in ${fmt(summary.load_seconds, 2)} s)`;
}

async function loadBrowser() {
  const t0 = performance.now();
  try {
    const [summary, queries] = await Promise.all([api("/api/browser/summary"), api("/api/browser/queries")]);
    B.summary = summary;
    B.rows = queries.rows;
    renderMetrics(summary);
    show($("browser-error"), false);
    show($("browser-on"), true);
    applyFilters();
  } catch (e) {
    $("browser-error").textContent = e.message;
    show($("browser-error"), true);
    show($("browser-on"), false);
  }
  requestAnimationFrame(() => { perf.loadMs = performance.now() - t0; });
}

function showList() {
  show($("browser-list"), true);
  show($("query-view"), false);
}

async function openQuery(qid) {
  await B.ready;
  if (!B.summary) return;
  show($("browser-list"), false);
  show($("query-view"), true);
  let d;
  try {
    d = await api(`/api/browser/query/${encodeURIComponent(qid)}`);
  } catch (e) {
    $("q-title").textContent = e.message;
    return;
  }
  $("query-view").dataset.qid = d.qid;
  $("q-title").textContent = d.query;
  $("q-meta").textContent =
    `qid ${d.qid} · video ${d.vid} · ${fmt(d.duration)} s · ${d.num_gt} GT window(s) (${d.buckets.join(", ")}) · ` +
    `top-1 IoU ${fmt(d.top1_iou, 3)} · best IoU ${fmt(d.best_iou, 3)} · top-1 at IoU 0.5: ${d["kind@0.5"]}, at 0.7: ${d["kind@0.7"]}`;
  // With the query's video under --videos, windows seek it when clicked.
  const player = $("q-player");
  show(player, !!d.video);
  if (d.video) {
    const src = `/media?path=${encodeURIComponent(d.video)}`;
    if (player.dataset.src !== src) { player.src = src; player.dataset.src = src; }
  } else { player.removeAttribute("src"); delete player.dataset.src; }
  const seekQ = d.video ? (t) => () => { player.currentTime = t; player.play().catch(() => {}); } : () => null;
  const rows = [{ label: "GT", items: d.gt_windows.map(([s, e], i) => ({ start: s, end: e, cls: "gt", attrs: { "data-gt": i }, onClick: seekQ(s) })) }];
  for (const w of d.pred_windows.slice(0, 20)) {
    rows.push({
      label: `#${w.rank}  ${fmt(w.score, 2)}`,
      items: [{ start: w.start, end: w.end, score: w.score, cls: w.counted ? "pred" : "pred uncounted", onClick: seekQ(w.start),
        title: `#${w.rank}: ${fmt(w.start)}–${fmt(w.end)} s, score ${w.score}, IoU ${fmt(w.iou, 3)}`, attrs: { "data-rank": w.rank } }],
    });
  }
  const playhead = draw.drawTimeline($("q-timeline"), d.duration, rows, { rowHeight: 14, playhead: !!d.video });
  player.ontimeupdate = playhead ? () => playhead(player.currentTime) : null;
  const series = [];
  if (d.pred_saliency) series.push({ values: d.pred_saliency, clipLen: d.clip_len, cls: "line-pred", label: "pred", scale: "minmax" });
  if (d.gt_saliency) series.push({ values: d.gt_saliency, clipLen: d.clip_len, cls: "line-gt", label: "gt", scale: [0, 4] });
  show($("q-saliency"), series.length > 0);
  if (series.length) draw.drawCurves($("q-saliency"), d.duration, series);
  const tbody = $("q-windows").tBodies[0];
  tbody.replaceChildren(...d.pred_windows.map((w) => {
    const tr = document.createElement("tr");
    const g = d.gt_windows[w.gt_index];
    tr.append(el("td", w.rank + (w.counted ? "" : " (not counted)"), { class: "num" }), el("td", fmt(w.start), { class: "num" }),
      el("td", fmt(w.end), { class: "num" }), el("td", fmt(w.score, 4), { class: "num" }),
      el("td", fmt(w.iou, 3), { class: "num" }), el("td", w.iou > 0 ? `${fmt(g[0])}–${fmt(g[1])} s` : "—"));
    return tr;
  }));
  const pos = B.shown.findIndex((r) => String(r.qid) === String(d.qid));
  $("prev-q").disabled = pos <= 0;
  $("next-q").disabled = pos < 0 || pos >= B.shown.length - 1;
  $("prev-q").onclick = () => { location.hash = `#browse/q/${encodeURIComponent(B.shown[pos - 1].qid)}`; };
  $("next-q").onclick = () => { location.hash = `#browse/q/${encodeURIComponent(B.shown[pos + 1].qid)}`; };
}

async function openFiles(ev) {
  ev.preventDefault();
  const body = { pred: $("open-pred").value.trim(), gt: $("open-gt").value.trim(), dataset: $("open-dataset").value };
  try {
    await api("/api/browser/open", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  } catch (e) {
    // 403 (outside the allowed directories) leaves the loaded file; a bad file replaces it
    if (!/outside the directories/.test(e.message)) { B.ready = loadBrowser(); await B.ready; }
    $("browser-error").textContent = e.message;
    show($("browser-error"), true);
    return;
  }
  B.sortKey = null;
  B.ready = loadBrowser();
  await B.ready;
  location.hash = "#browse";
}

function setupBrowser() {
  $("open-form").addEventListener("submit", openFiles);
  document.addEventListener("keydown", (ev) => {
    if ($("query-view").hidden || $("view-browse").hidden || ev.target.closest("input, select, textarea")) return;
    if (ev.key === "j" && !$("next-q").disabled) $("next-q").click();
    if (ev.key === "k" && !$("prev-q").disabled) $("prev-q").click();
  });
  for (const id of ["search", "kind-filter", "kind-iou", "bucket-filter", "multi-gt"]) {
    $(id).addEventListener(id === "search" ? "input" : "change", timed(applyFilters));
  }
  $("show-more").addEventListener("click", timed(() => {
    const from = Math.min(B.shown.length, B.limit);
    B.limit += ROW_LIMIT;
    renderRows(from);
  }));
  for (const th of $("queries").tHead.rows[0].cells) {
    th.addEventListener("click", timed(() => {
      const key = th.dataset.sort;
      B.sortDir = B.sortKey === key ? -B.sortDir : 1;
      B.sortKey = key;
      for (const other of th.parentNode.cells) other.classList.remove("sorted-asc", "sorted-desc");
      th.classList.add(B.sortDir > 0 ? "sorted-asc" : "sorted-desc");
      applyFilters();
    }));
  }
  $("queries").tBodies[0].addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (tr) location.hash = `#browse/q/${encodeURIComponent(tr.dataset.qid)}`;
  });
  B.ready = info.browser ? loadBrowser() : Promise.resolve();
  if (!info.browser) {
    $("browser-error").textContent = "No predictions loaded: start the server with --pred PRED.jsonl --gt GT.jsonl (or --run of a demo run).";
    show($("browser-error"), true);
  }
}

// ---------------------------------------------------------------------------------------------
// Live grounding
// ---------------------------------------------------------------------------------------------

const L = { video: null, result: null, history: new Map(), playhead: null, uploading: false };

function videoKey(v) { return v.upload ? `upload:${v.upload}` : `path:${v.path}`; }

function selectVideo(v, src) {
  L.video = v;
  L.result = null;
  $("player").src = src;
  renderLive();
}

function renderLive() {
  const r = L.result;
  show($("moments-title"), !!r);
  $("moments").replaceChildren();
  if (r) {
    $("moments-query").textContent = r.query;
    r.moments.forEach(([s, e, score], i) => {
      const li = el("li", `${draw.fmtTime(s)} – ${draw.fmtTime(e)} · score ${fmt(score, 3)}`,
        { "data-start": s, "data-end": e, "data-score": score, class: "moment" });
      li.addEventListener("click", () => seek(s));
      $("moments").appendChild(li);
      if (i === 0) li.classList.add("best");
    });
  }
  const hist = (L.video && L.history.get(videoKey(L.video))) || [];
  show($("history-title"), hist.length > 0);
  $("history").replaceChildren(...hist.map((h) => {
    const li = el("li", `“${h.result.query}” — ${h.result.moments.length} moments, ${fmt(h.seconds, 2)} s${h.cached ? ", cached video features" : ""}`,
      { "data-cached": String(h.cached) });
    li.addEventListener("click", () => { L.result = h.result; renderLive(); });
    return li;
  }));
  redrawLive();
}

function redrawLive() {
  const r = L.result;
  const player = $("player");
  const duration = r ? r.duration : (player.duration || 0);
  if (!duration) { $("live-timeline").replaceChildren(); $("live-saliency").replaceChildren(); return; }
  const top = r && r.moments.length ? Math.max(...r.moments.map((m) => m[2])) || 1 : 1;
  const rows = r ? r.moments.slice(0, 10).map(([s, e, score], i) => ({
    label: `#${i + 1}  ${fmt(score, 2)}`,
    // opacity relative to the best moment: live scores of a small model can all be low
    items: [{ start: s, end: e, score: score / top, cls: "moment", attrs: { "data-start": s }, onClick: () => seek(s),
      title: `${fmt(s)}–${fmt(e)} s, score ${fmt(score, 3)} (click to play)` }],
  })) : [];
  if (!rows.length) rows.push({ label: "moments", items: [] });
  L.playhead = draw.drawTimeline($("live-timeline"), duration, rows, { playhead: true, rowHeight: 14 });
  if (L.playhead) L.playhead(player.currentTime || 0);
  show($("live-saliency"), !!(r && r.saliency && r.saliency.length));
  if (r && r.saliency && r.saliency.length) {
    draw.drawCurves($("live-saliency"), duration, [{ values: r.saliency, clipLen: r.clip_len, cls: "line-pred", label: "pred" }]);
  }
}

function seek(t) {
  const player = $("player");
  player.currentTime = t;
  if (L.playhead) L.playhead(t);
  player.play().catch(() => {}); // autoplay policies may refuse; the seek still happened
}

function liveError(msg) {
  $("live-error").textContent = msg || "";
  show($("live-error"), !!msg);
}

function uploadFile(file) {
  if (L.uploading) { liveError("An upload is already in progress; wait for it to finish."); return; }
  if (file.size > info.max_upload) {
    liveError(`${file.name}: ${file.size} bytes is over this server's upload limit of ${info.max_upload} bytes.`);
    return;
  }
  liveError("");
  L.uploading = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/upload?name=${encodeURIComponent(file.name)}`);
  xhr.upload.onprogress = (ev) => {
    if (ev.lengthComputable) $("upload-status").textContent = `uploading ${file.name}: ${Math.round(100 * ev.loaded / ev.total)}%`;
  };
  xhr.upload.onload = () => { $("upload-status").textContent = `checking ${file.name}…`; };
  xhr.onloadend = () => {
    L.uploading = false;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = { error: `upload failed (HTTP ${xhr.status})` }; }
    if (xhr.status !== 200) {
      $("upload-status").textContent = "";
      liveError(body.error || `upload failed (HTTP ${xhr.status})`);
      return;
    }
    $("upload-status").textContent = `${body.name} (${fmt(body.duration)} s)`;
    const opt = el("option", `uploaded: ${body.name}`, { value: `upload:${body.upload}` });
    $("video-select").appendChild(opt);
    $("video-select").value = opt.value;
    selectVideo({ upload: body.upload, name: body.name }, `/media/upload/${body.upload}`);
  };
  xhr.send(file);
}

async function groundQuery(ev) {
  ev.preventDefault();
  const query = $("query-input").value.trim();
  if (!L.video) { liveError("Choose or upload a video first."); return; }
  if (!query) { liveError("Type a query."); return; }
  liveError("");
  const video = L.video;
  const body = { query, ...(video.upload ? { upload: video.upload } : { path: video.path }) };
  let job;
  try {
    job = (await api("/api/ground", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).job;
  } catch (e) { liveError(e.message); return; }
  const bar = $("ground-progress");
  show(bar, true);
  $("ground-btn").disabled = true;
  try {
    for (;;) {
      const s = await api(`/api/jobs/${job}`);
      bar.value = s.fraction;
      $("ground-stage").textContent = s.state === "queued" ? `queued (position ${s.position})` : `${s.stage} ${Math.round(100 * s.fraction)}%`;
      if (s.state === "done") {
        const key = videoKey(video);
        if (!L.history.has(key)) L.history.set(key, []);
        L.history.get(key).unshift({ result: s.result, seconds: s.seconds, cached: s.cache_hit });
        const from = s.cache_hit ? " (video features from the cache)" : s.cache_hit === false ? " (video features extracted)" : "";
        $("ground-stage").textContent = `done in ${fmt(s.seconds, 2)} s${from}`;
        if (videoKey(L.video) === key) { L.result = s.result; renderLive(); }
        break;
      }
      if (s.state === "error") { liveError(s.error); $("ground-stage").textContent = ""; break; }
      await new Promise((res) => setTimeout(res, 150));
    }
  } catch (e) {
    liveError(e.message);
  } finally {
    show(bar, false);
    $("ground-btn").disabled = false;
  }
}

function setupLive() {
  show($("live-off"), !info.live && !info.live_error);
  $("live-reason").textContent = info.live_error || "";
  show($("live-reason"), !!info.live_error);
  show($("live-on"), info.live);
  if (!info.live) return;
  for (const v of info.videos) $("video-select").appendChild(el("option", v.label, { value: `path:${v.path}`, title: v.path }));
  $("video-select").addEventListener("change", () => {
    const v = $("video-select").value;
    if (v.startsWith("path:")) selectVideo({ path: v.slice(5) }, `/media?path=${encodeURIComponent(v.slice(5))}`);
    else if (v.startsWith("upload:")) selectVideo({ upload: v.slice(7) }, `/media/upload/${v.slice(7)}`);
  });
  $("upload-input").addEventListener("change", (ev) => { if (ev.target.files.length) uploadFile(ev.target.files[0]); ev.target.value = ""; });
  $("ground-form").addEventListener("submit", groundQuery);
  const player = $("player");
  player.addEventListener("loadedmetadata", () => { if (!L.result) redrawLive(); });
  player.addEventListener("timeupdate", () => { if (L.playhead) L.playhead(player.currentTime); });
  player.addEventListener("error", () => {
    if (player.getAttribute("src")) liveError("This browser cannot play the video (codec or container); grounding it still works.");
  });
  if (info.videos.length) {
    $("video-select").value = `path:${info.videos[0].path}`;
    $("video-select").dispatchEvent(new Event("change"));
  }
}

async function main() {
  try {
    info = await api("/api/info");
  } catch (e) {
    document.body.textContent = `cannot reach the sidetune server: ${e.message}`;
    return;
  }
  $("server-note").textContent = info.run ? `run: ${info.run}` : "";
  setupLive();
  setupBrowser();
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { if (!$("view-live").hidden) redrawLive(); });
  route();
}

main();
