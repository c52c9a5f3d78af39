// The waterfall of one trace: spans as an indented tree in start order, each with a bar placed on
// the trace's time axis, coloured by service, ERROR spans marked, events as ticks. Rows are buttons
// (keyboard: arrows move, left/right collapse and expand); choosing one calls onSelect(span).

import { el } from "./dom.js";
import { formatDuration, nanosToMs, serviceColor } from "./format.js";

// attributes worth seeing without opening a span: the booking's and the payment's story
const HINT_KEYS = [
  "booking.outcome",
  "booking.contention_reason",
  "payment.status",
  "payment.decline_reason",
  "booking.rollback.reason",
  "booking.confirmation_code",
  "http.response.status_code",
  "messaging.destination.name",
];

/** Spans in depth-first order of the tree, each with its depth; spans whose parent is missing are roots. */
function spanTree(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    if (span.parent_span_id && byId.has(span.parent_span_id) && span.parent_span_id !== span.span_id) {
      if (!children.has(span.parent_span_id)) children.set(span.parent_span_id, []);
      children.get(span.parent_span_id).push(span);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a, b) => Number(a.start_unix_nano) - Number(b.start_unix_nano);
  const ordered = [];
  const seen = new Set();
  // an explicit stack: a deep trace must not overflow the call stack
  const stack = roots.sort(byStart).reverse().map((span) => ({ span, depth: 0 }));
  while (stack.length) {
    const { span, depth } = stack.pop();
    if (seen.has(span.span_id)) continue;
    seen.add(span.span_id);
    const kids = (children.get(span.span_id) || []).sort(byStart);
    ordered.push({
      span,
      depth,
      childCount: kids.length,
      orphan: Boolean(span.parent_span_id) && !byId.has(span.parent_span_id),
    });
    for (let i = kids.length - 1; i >= 0; i--) stack.push({ span: kids[i], depth: depth + 1 });
  }
  return ordered;
}

/** The trace's time frame in milliseconds since the epoch (first start, last end). */
function traceWindow(spans) {
  let start = Infinity;
  let end = -Infinity;
  for (const s of spans) {
    start = Math.min(start, nanosToMs(s.start_unix_nano));
    end = Math.max(end, nanosToMs(s.end_unix_nano));
  }
  return { start, end, total: Math.max(end - start, 0.001) };
}

function hint(span) {
  const parts = [];
  for (const key of HINT_KEYS) {
    if (span.attributes && span.attributes[key] !== undefined) parts.push(`${key.split(".").pop()}=${span.attributes[key]}`);
  }
  return parts.join(" ");
}

function axis(frame) {
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
    el("span", { class: "tick", style: { left: `${f * 100}%` } }, formatDuration(frame.total * f)),
  );
  return el(
    "div",
    { class: "wf-axis", "aria-hidden": "true" },
    el("div", { class: "wf-label" }, "Span"),
    el("div", { class: "wf-track" }, ticks),
  );
}

function bar(span, frame) {
  const start = nanosToMs(span.start_unix_nano) - frame.start;
  const duration = nanosToMs(span.end_unix_nano) - nanosToMs(span.start_unix_nano);
  const left = (start / frame.total) * 100;
  const width = Math.max((duration / frame.total) * 100, 0);
  const isError = span.status && span.status.code === "ERROR";
  const track = el("div", { class: "wf-track" });
  const barNode = el("div", {
    class: isError ? "wf-bar error" : "wf-bar",
    style: { left: `${left}%`, width: `max(2px, ${width}%)` },
    title: `${span.name} · ${span.service} · ${formatDuration(span.duration_ms ?? duration)}${
      isError && span.status.message ? ` · ${span.status.message}` : ""
    }`,
  });
  track.appendChild(barNode);
  for (const event of span.events || []) {
    const at = ((nanosToMs(event.time_unix_nano) - frame.start) / frame.total) * 100;
    track.appendChild(el("span", { class: "wf-event", style: { left: `${at}%` }, title: `event: ${event.name}` }));
  }
  const label = el("span", { class: "wf-duration" }, formatDuration(span.duration_ms ?? duration));
  // the duration sits after the bar, before it when the bar ends near the right edge, or inside a
  // bar that spans nearly the whole trace
  if (left + width <= 78) label.style.left = `calc(${left + width}% + 4px)`;
  else if (left >= 15) label.style.right = `calc(${100 - left}% + 4px)`;
  else {
    label.style.right = `calc(${100 - left - width}% + 4px)`;
    label.classList.add("inside");
  }
  track.appendChild(label);
  return track;
}

/**
 * The waterfall element and a function to select a span by id.
 * onSelect(span) is called when the user picks a row.
 */
export function waterfall(spans, { onSelect }) {
  const frame = traceWindow(spans);
  const rows = spanTree(spans);
  const collapsed = new Set();
  const list = el("ol", { class: "wf-rows", "aria-label": `Spans of the trace (${spans.length})` });
  const entries = [];

  function applyVisibility() {
    let hideDeeperThan = Infinity;
    for (const entry of entries) {
      if (entry.depth <= hideDeeperThan) hideDeeperThan = Infinity;
      entry.item.hidden = entry.depth > hideDeeperThan;
      if (!entry.item.hidden && collapsed.has(entry.span.span_id)) hideDeeperThan = entry.depth;
    }
  }

  function toggle(entry, open) {
    if (!entry.childCount) return;
    const isOpen = !collapsed.has(entry.span.span_id);
    const next = open === undefined ? !isOpen : open;
    if (next) collapsed.delete(entry.span.span_id);
    else collapsed.add(entry.span.span_id);
    entry.toggle.setAttribute("aria-expanded", String(next));
    entry.toggle.textContent = next ? "▾" : "▸";
    applyVisibility();
  }

  function select(spanId, { focus = false } = {}) {
    const entry = entries.find((e) => e.span.span_id === spanId);
    if (!entry) return null;
    for (const e of entries) {
      e.button.classList.toggle("selected", e === entry);
      if (e === entry) e.button.setAttribute("aria-current", "true");
      else e.button.removeAttribute("aria-current");
    }
    // a selected span inside a collapsed subtree is revealed
    for (const e of entries) {
      if (collapsed.has(e.span.span_id) && isAncestor(e, entry)) toggle(e, true);
    }
    if (focus) entry.button.focus();
    entry.button.scrollIntoView({ block: "nearest" });
    return entry.span;
  }

  function isAncestor(candidate, entry) {
    const from = entries.indexOf(candidate);
    const to = entries.indexOf(entry);
    if (to <= from) return false;
    for (let i = from + 1; i <= to; i++) if (entries[i].depth <= candidate.depth) return false;
    return true;
  }

  function move(entry, step) {
    let i = entries.indexOf(entry) + step;
    while (i >= 0 && i < entries.length && entries[i].item.hidden) i += step;
    if (i >= 0 && i < entries.length) entries[i].button.focus();
  }

  for (const row of rows) {
    const { span, depth, childCount, orphan } = row;
    const isError = span.status && span.status.code === "ERROR";
    const toggleButton = childCount
      ? el("button", { type: "button", class: "wf-toggle", "aria-expanded": "true", "aria-label": `Collapse or expand the ${childCount} child spans of ${span.name}` }, "▾")
      : el("span", { class: "wf-toggle placeholder", "aria-hidden": "true" });
    const button = el(
      "button",
      {
        type: "button",
        class: isError ? "wf-row error" : "wf-row",
        "aria-controls": "span-detail",
        dataset: { spanId: span.span_id, spanName: span.name, service: span.service, depth },
        style: { "--svc": serviceColor(span.service) },
      },
      el(
        "div",
        { class: "wf-label" },
        el("span", { class: "wf-swatch", "aria-hidden": "true" }),
        isError ? el("span", { class: "wf-error-mark", title: "status ERROR" }, "!", el("span", { class: "visually-hidden" }, " error: ")) : null,
        el("span", { class: "wf-name" }, span.name),
        el("span", { class: "wf-service" }, span.service),
        orphan ? el("span", { class: "wf-orphan", title: "its parent span is not in this trace (yet)" }, "↳?") : null,
        el("span", { class: "wf-hint" }, hint(span)),
      ),
      bar(span, frame),
    );
    const item = el("li", { class: "wf-item", style: { "--depth": depth } }, toggleButton, button);
    const entry = { span, depth, childCount, item, button, toggle: toggleButton };
    entries.push(entry);
    button.addEventListener("click", () => {
      select(span.span_id);
      onSelect(span);
    });
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") move(entry, 1);
      else if (event.key === "ArrowUp") move(entry, -1);
      else if (event.key === "ArrowLeft") toggle(entry, false);
      else if (event.key === "ArrowRight") toggle(entry, true);
      else return;
      event.preventDefault();
    });
    if (childCount) toggleButton.addEventListener("click", () => toggle(entry));
    list.appendChild(item);
  }

  const node = el("div", { class: "waterfall", id: "waterfall" }, axis(frame), list);
  return { node, select, frame };
}
