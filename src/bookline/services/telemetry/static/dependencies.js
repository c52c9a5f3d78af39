// The service dependency map (/dependencies): services as nodes laid out in layers from the callers
// to the callees, one arrow per caller -> callee pair with its call count, errors in red; drawn in
// SVG from GET /api/dependencies, with the same edges as a table for keyboards and screen readers.

import { getJson } from "./api.js";
import { el, replace, svg } from "./dom.js";
import { serviceColor } from "./format.js";

const NODE_W = 176;
const NODE_H = 44;
const COL_GAP = 150;
const ARC_ROOM = 56; // above the nodes, for calls that skip a layer
const ROW_GAP = 48;
const MARGIN = 24;
const WINDOWS = [
  ["", "all stored traces"],
  ["15", "last 15 minutes"],
  ["60", "last hour"],
  ["360", "last 6 hours"],
  ["1440", "last 24 hours"],
];

/** Layer of each service: the longest chain of calls leading to it (cycles are cut at n layers). */
function layers(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const { caller, callee } of edges) {
      const next = layer.get(caller) + 1;
      if (next < nodes.length && next > layer.get(callee)) {
        layer.set(callee, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

function layout(edges) {
  const nodes = [...new Set(edges.flatMap((e) => [e.caller, e.callee]))].sort();
  const layer = layers(nodes, edges);
  const columns = [];
  for (const node of nodes) {
    const l = layer.get(node);
    (columns[l] ||= []).push(node);
  }
  const tallest = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const skips = edges.some((e) => layer.get(e.callee) - layer.get(e.caller) > 1);
  const arcRoom = skips ? ARC_ROOM : 0;
  const height = MARGIN * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP + 40 + arcRoom;
  const positions = new Map();
  columns.forEach((column, l) => {
    if (!column) return;
    const used = column.length * NODE_H + (column.length - 1) * ROW_GAP;
    const top = arcRoom + (height - arcRoom - used) / 2;
    column.forEach((node, i) => {
      positions.set(node, { x: MARGIN + l * (NODE_W + COL_GAP), y: top + i * (NODE_H + ROW_GAP) });
    });
  });
  const width = MARGIN * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP;
  return { nodes, positions, layer, width, height };
}

function edgePath(from, to, layerSkip) {
  if (layerSkip > 1) {
    // a call that skips a layer arcs over the nodes between (apex near the top of the map)
    const x1 = from.x + NODE_W / 2;
    const y1 = from.y;
    const x2 = to.x + NODE_W / 2;
    const y2 = to.y - 2;
    const apex = MARGIN / 2 + 14;
    const control = (apex - (y1 + y2) / 8) / 0.75;
    return { d: `M${x1},${y1} C${x1},${control} ${x2},${control} ${x2},${y2}`, mid: [(x1 + x2) / 2, apex + 16] };
  }
  if (to.x > from.x) {
    // forward: right side of the caller to the left side of the callee
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x - 2;
    const y2 = to.y + NODE_H / 2;
    const bend = (x2 - x1) / 2;
    return { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, mid: [(x1 + x2) / 2, (y1 + y2) / 2] };
  }
  // same layer or backwards (a call back up the chain): an arc below both nodes
  const x1 = from.x + NODE_W / 2 + 10;
  const y1 = from.y + NODE_H;
  const x2 = to.x + NODE_W / 2 - 10;
  const y2 = to.y + NODE_H + 2;
  const dip = Math.max(y1, y2) + 50;
  return { d: `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`, mid: [(x1 + x2) / 2, dip - 12] };
}

function drawMap(edges) {
  const { nodes, positions, layer, width, height } = layout(edges);
  const maxCalls = Math.max(1, ...edges.map((e) => e.calls));
  const defs = svg(
    "defs",
    {},
    ["plain", "error"].map((kind) =>
      svg(
        "marker",
        {
          id: `arrow-${kind}`,
          viewBox: "0 0 10 10",
          refX: "9",
          refY: "5",
          markerUnits: "userSpaceOnUse",
          markerWidth: "11",
          markerHeight: "11",
          orient: "auto-start-reverse",
        },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: `arrowhead ${kind}` }),
      ),
    ),
  );
  const edgeNodes = edges.map((edge) => {
    const skip = layer.get(edge.callee) - layer.get(edge.caller);
    const { d, mid } = edgePath(positions.get(edge.caller), positions.get(edge.callee), skip);
    const kind = edge.errors > 0 ? "error" : "plain";
    const label = `${edge.calls} call${edge.calls === 1 ? "" : "s"}`;
    return svg(
      "g",
      { class: `edge ${kind}`, dataset: { caller: edge.caller, callee: edge.callee } },
      svg("title", {}, `${edge.caller} → ${edge.callee}: ${label}, ${edge.errors} error${edge.errors === 1 ? "" : "s"}`),
      svg("path", {
        d,
        class: "edge-line",
        "stroke-width": String(1.5 + 3 * Math.log10(1 + (9 * edge.calls) / maxCalls)),
        "marker-end": `url(#arrow-${kind})`,
      }),
      svg(
        "text",
        { x: mid[0], y: mid[1] - 6, class: "edge-label", "text-anchor": "middle" },
        label,
        edge.errors > 0 ? svg("tspan", { class: "edge-errors" }, ` · ${edge.errors} err`) : null,
      ),
    );
  });
  const nodeNodes = nodes.map((name) => {
    const { x, y } = positions.get(name);
    return svg(
      "g",
      { class: "node", dataset: { service: name }, transform: `translate(${x},${y})` },
      svg("rect", { width: NODE_W, height: NODE_H, rx: 8, style: { stroke: serviceColor(name) } }),
      svg("rect", { width: 6, height: NODE_H, rx: 3, style: { fill: serviceColor(name) } }),
      svg("text", { x: NODE_W / 2 + 3, y: NODE_H / 2 + 5, "text-anchor": "middle" }, name),
    );
  });
  return svg(
    "svg",
    {
      class: "depmap",
      viewBox: `0 0 ${width} ${height}`,
      width,
      role: "img",
      "aria-label": `Service dependency map: ${nodes.length} services, ${edges.length} caller-callee pairs (listed in the table below)`,
    },
    defs,
    svg("g", {}, edgeNodes),
    svg("g", {}, nodeNodes),
  );
}

function edgeTable(edges) {
  return el(
    "table",
    { class: "edges", id: "edges" },
    el("caption", {}, "Calls between services"),
    el("thead", {}, el("tr", {}, ["Caller", "Callee", "Calls", "Errors"].map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      {},
      edges.map((e) =>
        el(
          "tr",
          { class: e.errors ? "has-error" : null },
          el("td", {}, e.caller),
          el("td", {}, e.callee),
          el("td", { class: "num" }, String(e.calls)),
          el("td", { class: "num" }, e.errors ? el("span", { class: "badge error" }, String(e.errors)) : "0"),
        ),
      ),
    ),
  );
}

export async function renderDependencies(main, { params, navigate, signal }) {
  const minutes = params.get("minutes") || "";
  const choose = el(
    "select",
    { id: "dep-window", "aria-describedby": "dep-status" },
    WINDOWS.map(([value, text]) => el("option", { value, selected: value === minutes }, text)),
  );
  choose.addEventListener("change", () => navigate(choose.value ? `/dependencies?minutes=${choose.value}` : "/dependencies", { replace: true }));
  const status = el("p", { class: "status", id: "dep-status", role: "status" }, "Loading…");
  const body = el("div", { class: "depmap-wrap" });
  replace(main, el("h1", {}, "Service map"), el("div", { class: "field inline" }, el("label", { for: "dep-window" }, "Spans from"), choose), status, body);
  const since = minutes ? new Date(Date.now() - Number(minutes) * 60_000).toISOString() : "";
  const { edges } = await getJson("dependencies", { since }, { signal });
  const sorted = [...edges].sort((a, b) => a.caller.localeCompare(b.caller) || a.callee.localeCompare(b.callee));
  if (!sorted.length) {
    replace(status, "No calls between services yet: make a booking, then reload.");
    return;
  }
  const errors = sorted.reduce((n, e) => n + e.errors, 0);
  replace(status, `${sorted.length} caller → callee pairs, ${sorted.reduce((n, e) => n + e.calls, 0)} calls, ${errors} with errors.`);
  replace(body, el("div", { class: "scroll-x" }, drawMap(sorted)), edgeTable(sorted));
}
