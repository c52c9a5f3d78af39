// Small SVG charts for the dashboard, drawn by hand: stacked bars over time and horizontal bars by
// category. Each mark carries a <title> (its value on hover), and each chart a data table for
// people who cannot see it.

import { el, svg } from "./dom.js";
import { seriesColor } from "./format.js";

/** A round upper bound for an axis and its step (1, 2 or 5 times a power of ten), about four ticks. */
function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const whole = Math.max(step, 1);
  return { top: Math.ceil(max / whole) * whole, step: whole };
}

function shortTime(iso) {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** A data table for a time series chart: one row per series, one column per label. */
function seriesTable(caption, labels, series) {
  const used = labels.map((_, i) => series.some((s) => (s.values[i] || 0) > 0));
  const columns = labels.map((label, i) => [label, i]).filter(([, i]) => used[i]);
  return el(
    "details",
    { class: "data-table" },
    el("summary", {}, "Data table"),
    el(
      "div",
      { class: "scroll-x" },
      el(
        "table",
        {},
        el("caption", {}, caption),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Series"), columns.map(([label]) => el("th", { scope: "col" }, shortTime(label))))),
        el(
          "tbody",
          {},
          series.map((s) => el("tr", {}, el("th", { scope: "row" }, s.name), columns.map(([, i]) => el("td", { class: "num" }, String(s.values[i] || 0))))),
        ),
      ),
    ),
  );
}

/**
 * Stacked bars, one per label (a minute), segments per series.
 * series: [{name, values: number[], color?}]
 */
export function stackedBars({ labels, series, caption }) {
  const width = 720;
  const height = 220;
  const left = 40;
  const bottom = 24;
  const top = 10;
  const plotH = height - top - bottom;
  const plotW = width - left - 8;
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const { top: yTop, step } = niceScale(Math.max(0, ...totals));
  const slot = plotW / Math.max(labels.length, 1);
  const barW = Math.max(slot * 0.75, 1);
  const y = (v) => top + plotH - (v / yTop) * plotH;
  const grid = [];
  for (let v = 0; v <= yTop + 1e-9; v += step) {
    grid.push(
      svg("line", { x1: left, x2: width - 8, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, String(Math.round(v * 100) / 100)),
    );
  }
  const xLabels = [];
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % every === 0) {
      xLabels.push(svg("text", { x: left + i * slot + slot / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, shortTime(label)));
    }
  });
  const bars = [];
  labels.forEach((label, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      if (value <= 0) return;
      bars.push(
        svg(
          "rect",
          {
            x: left + i * slot + (slot - barW) / 2,
            y: y(base + value),
            width: barW,
            height: Math.max(y(base) - y(base + value), 0.5),
            fill: s.color || seriesColor(k),
            class: "mark",
          },
          svg("title", {}, `${shortTime(label)} ${s.name}: ${value}`),
        ),
      );
      base += value;
    });
  });
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": `${caption} (see the data table)` },
    grid,
    svg("line", { x1: left, x2: width - 8, y1: y(0), y2: y(0), class: "baseline" }),
    bars,
    xLabels,
  );
  const legend = el(
    "ul",
    { class: "legend" },
    series.map((s, k) =>
      el("li", {}, el("span", { class: "swatch", style: { background: s.color || seriesColor(k) }, "aria-hidden": "true" }), s.name),
    ),
  );
  return el("div", { class: "chart-box" }, chart, series.length > 1 ? legend : null, seriesTable(caption, labels, series));
}

/**
 * Horizontal bars, one per item, longest first.
 * items: [{label, value, color?}]
 */
export function horizontalBars(items, { caption, empty = "Nothing yet." }) {
  if (!items.length) return el("p", { class: "muted empty" }, empty);
  const sorted = [...items].sort((a, b) => b.value - a.value);
  const rowH = 26;
  const labelW = 190;
  const width = 520;
  const height = sorted.length * rowH + 4;
  const max = Math.max(1, ...sorted.map((i) => i.value));
  const barSpace = width - labelW - 50;
  const rows = sorted.map((item, k) => {
    const y = k * rowH + 2;
    const w = Math.max((item.value / max) * barSpace, item.value > 0 ? 2 : 0);
    return svg(
      "g",
      { class: "hbar" },
      svg("title", {}, `${item.label}: ${item.value}`),
      svg("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end", class: "axis label" }, item.label),
      svg("rect", { x: labelW, y: y + 4, width: w, height: rowH - 8, rx: 3, fill: item.color || seriesColor(k), class: "mark" }),
      svg("text", { x: labelW + w + 6, y: y + rowH / 2 + 4, class: "axis value" }, String(item.value)),
    );
  });
  return el(
    "div",
    { class: "chart-box" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart hbars", role: "img", "aria-label": caption }, rows),
    el(
      "details",
      { class: "data-table" },
      el("summary", {}, "Data table"),
      el(
        "table",
        {},
        el("caption", {}, caption),
        el("tbody", {}, sorted.map((i) => el("tr", {}, el("th", { scope: "row" }, i.label), el("td", { class: "num" }, String(i.value))))),
      ),
    ),
  );
}
