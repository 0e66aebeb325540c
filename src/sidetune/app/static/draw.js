// SVG drawing of timelines (windows on a time axis) and saliency curves. No dependencies.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const LABEL_W = 90; // left margin for row labels
const AXIS_H = 18;

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function clearSvg(svg, height) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 800, 300);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", height);
  return width;
}

function niceStep(duration, width) {
  const target = duration / Math.max(width / 80, 1);
  for (const s of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (s >= target) return s;
  return 7200;
}

function fmtTime(t) {
  if (t < 60) return `${+t.toFixed(1)}s`;
  const m = Math.floor(t / 60), s = Math.round(t - 60 * m);
  return `${m}:${String(s).padStart(2, "0")}`;
}

function drawAxis(svg, x, duration, y, width) {
  const step = niceStep(duration, width - LABEL_W);
  for (let t = 0; t <= duration + 1e-9; t += step) {
    svgEl("line", { x1: x(t), x2: x(t), y1: y, y2: y + 4, class: "tick" }, svg);
    const anchor = x(t) > width - 24 ? "end" : "middle"; // keep the last label inside
    const label = svgEl("text", { x: x(t), y: y + 14, class: "tick-label", "text-anchor": anchor }, svg);
    label.textContent = fmtTime(t);
  }
}

// rows: [{label, items: [{start, end, score, cls, title, attrs, onClick}]}]
function drawTimeline(svg, duration, rows, opts = {}) {
  const rowH = opts.rowHeight || 16, gap = 4;
  const height = rows.length * (rowH + gap) + AXIS_H + 4;
  const width = clearSvg(svg, height);
  const span = Math.max(duration, 1e-6);
  const x = (t) => LABEL_W + (Math.min(Math.max(t, 0), span) / span) * (width - LABEL_W - 6);
  rows.forEach((row, i) => {
    const y = i * (rowH + gap) + 2;
    svgEl("rect", { x: LABEL_W, y, width: width - LABEL_W - 6, height: rowH, class: "lane" }, svg);
    const text = svgEl("text", { x: LABEL_W - 6, y: y + rowH - 4, "text-anchor": "end", class: "row-label" }, svg);
    text.textContent = row.label;
    for (const it of row.items) {
      const w = Math.max(x(it.end) - x(it.start), 2);
      const rect = svgEl("rect", { x: x(it.start), y, width: w, height: rowH, class: it.cls || "", ...(it.attrs || {}) }, svg);
      if (it.score !== undefined && it.score !== null) rect.setAttribute("fill-opacity", 0.25 + 0.75 * Math.min(Math.max(it.score, 0), 1));
      const title = svgEl("title", {}, rect);
      title.textContent = it.title || `${it.start.toFixed(1)}–${it.end.toFixed(1)} s`;
      if (it.onClick) rect.addEventListener("click", it.onClick);
    }
  });
  drawAxis(svg, x, span, rows.length * (rowH + gap) + 2, width);
  if (opts.playhead) {
    const line = svgEl("line", { x1: x(0), x2: x(0), y1: 0, y2: rows.length * (rowH + gap), class: "playhead" }, svg);
    return (t) => { line.setAttribute("x1", x(t)); line.setAttribute("x2", x(t)); };
  }
  return null;
}

// series: [{values, clipLen, cls, label, scale: "minmax" | [lo, hi]}]; values[i] covers clip i.
function drawCurves(svg, duration, series, opts = {}) {
  const height = opts.height || 90, top = 6, plotH = height - AXIS_H - top;
  const width = clearSvg(svg, height);
  const span = Math.max(duration, 1e-6);
  const x = (t) => LABEL_W + (Math.min(Math.max(t, 0), span) / span) * (width - LABEL_W - 6);
  svgEl("rect", { x: LABEL_W, y: top, width: width - LABEL_W - 6, height: plotH, class: "lane" }, svg);
  const label = svgEl("text", { x: LABEL_W - 6, y: top + plotH / 2 + 4, "text-anchor": "end", class: "row-label" }, svg);
  label.textContent = opts.label || "saliency";
  for (const s of series) {
    if (!s.values || !s.values.length) continue;
    let lo, hi;
    if (Array.isArray(s.scale)) [lo, hi] = s.scale;
    else { lo = Math.min(...s.values); hi = Math.max(...s.values); }
    const range = hi - lo || 1;
    const pts = [];
    s.values.forEach((v, i) => {
      const y = top + plotH - ((v - lo) / range) * plotH;
      pts.push(`${x(i * s.clipLen).toFixed(1)},${y.toFixed(1)}`, `${x((i + 1) * s.clipLen).toFixed(1)},${y.toFixed(1)}`);
    });
    svgEl("polyline", { points: pts.join(" "), class: s.cls, "data-series": s.label || "" }, svg);
  }
  drawAxis(svg, x, span, top + plotH, width);
}

window.draw = { drawTimeline, drawCurves, fmtTime };
