// The trace page (/traces/{trace_id}): a summary, the waterfall, the chosen span's attributes,
// events, links and logs, and every log line of the trace. ?span=ID in the URL selects a span.

import { ApiError, getJson } from "./api.js";
import { el, replace } from "./dom.js";
import { formatDuration, formatValue, nanosToMs, serviceChip, timeElement } from "./format.js";
import { waterfall } from "./waterfall.js";

// a long attribute key wraps after its dots, not in the middle of a word
function breakable(key) {
  return key.split(".").flatMap((part, i) => (i === 0 ? [part] : [el("wbr"), `.${part}`]));
}

function attributeTable(attributes, caption) {
  const keys = Object.keys(attributes || {}).sort();
  if (!keys.length) return el("p", { class: "muted" }, "No attributes.");
  return el(
    "table",
    { class: "kv" },
    el("caption", { class: "visually-hidden" }, caption),
    el(
      "tbody",
      {},
      keys.map((key) =>
        el("tr", {}, el("th", { scope: "row" }, breakable(key)), el("td", {}, el("code", {}, formatValue(attributes[key])))),
      ),
    ),
  );
}

function offset(nanos, frame) {
  return `+${formatDuration(nanosToMs(nanos) - frame.start)}`;
}

function statusBadge(status) {
  const code = (status && status.code) || "UNSET";
  return el("span", { class: `badge status-${code.toLowerCase()}` }, code);
}

function logList(logs, { onSpan } = {}) {
  if (!logs.length) return el("p", { class: "muted" }, "No log records.");
  return el(
    "ol",
    { class: "logs" },
    logs.map((log) =>
      el(
        "li",
        { class: `log sev-${String(log.severity_text || "").toLowerCase()}` },
        el(
          "div",
          { class: "log-head" },
          timeElement(log.time),
          el("span", { class: "badge severity" }, log.severity_text || String(log.severity_number ?? "")),
          serviceChip(log.service),
          onSpan && log.span_id
            ? el("button", { type: "button", class: "link small", onclick: () => onSpan(log.span_id) }, `span ${log.span_id.slice(0, 8)}`)
            : null,
        ),
        el("pre", { class: "log-body" }, formatValue(log.body)),
        Object.keys(log.attributes || {}).length
          ? el("details", {}, el("summary", {}, "attributes"), attributeTable(log.attributes, "Log attributes"))
          : null,
      ),
    ),
  );
}

function spanDetail(span, frame, { traceId, spansById, onSpan, signal }) {
  const parent = span.parent_span_id ? spansById.get(span.parent_span_id) : null;
  const logsBox = el("div", { class: "span-logs" }, el("p", { class: "muted" }, "Loading logs…"));
  const events = span.events || [];
  const links = span.links || [];
  const node = el(
    "div",
    {},
    el("h2", { id: "span-title" }, span.name),
    el("p", { class: "span-meta" }, serviceChip(span.service), " ", el("span", { class: "badge" }, span.kind), " ", statusBadge(span.status)),
    span.status && span.status.message ? el("p", { class: "notice error" }, span.status.message) : null,
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "Duration"),
      el("dd", {}, formatDuration(span.duration_ms)),
      el("dt", {}, "Start"),
      el("dd", {}, timeElement(span.start_time), " ", el("span", { class: "muted" }, offset(span.start_unix_nano, frame))),
      el("dt", {}, "Span id"),
      el("dd", {}, el("code", {}, span.span_id)),
      el("dt", {}, "Parent"),
      el(
        "dd",
        {},
        !span.parent_span_id
          ? "none (root)"
          : parent
            ? el("button", { type: "button", class: "link", onclick: () => onSpan(parent.span_id) }, `${parent.name} (${parent.service})`)
            : el("span", {}, el("code", {}, span.parent_span_id), " not in this trace (yet)"),
      ),
    ),
    el("h3", {}, "Attributes"),
    attributeTable(span.attributes, "Span attributes"),
    el("h3", {}, `Events (${events.length})`),
    events.length
      ? el(
          "ol",
          { class: "events" },
          events.map((event) =>
            el(
              "li",
              {},
              el("div", { class: "event-head" }, el("strong", {}, event.name), " ", el("span", { class: "muted" }, offset(event.time_unix_nano, frame))),
              Object.keys(event.attributes || {}).length ? attributeTable(event.attributes, `Attributes of event ${event.name}`) : null,
            ),
          ),
        )
      : el("p", { class: "muted" }, "No events."),
    el("h3", {}, `Links (${links.length})`),
    links.length
      ? el(
          "ul",
          { class: "links" },
          links.map((link) =>
            el(
              "li",
              {},
              link.trace_id === traceId
                ? el("button", { type: "button", class: "link", onclick: () => onSpan(link.span_id) }, `span ${link.span_id} (this trace)`)
                : el("a", { href: `/traces/${encodeURIComponent(link.trace_id)}?span=${encodeURIComponent(link.span_id)}` }, `trace ${link.trace_id} · span ${link.span_id}`),
              Object.keys(link.attributes || {}).length ? attributeTable(link.attributes, "Link attributes") : null,
            ),
          ),
        )
      : el("p", { class: "muted" }, "No links."),
    el("h3", {}, "Logs of this span"),
    logsBox,
  );
  getJson("logs", { trace_id: traceId, span_id: span.span_id, limit: 200 }, { signal })
    .then(({ logs }) => replace(logsBox, logList(logs)))
    .catch((exc) => {
      if (exc.name !== "AbortError") replace(logsBox, el("p", { class: "notice error" }, `Logs unavailable: ${exc.message}`));
    });
  return node;
}

function notFound(main, traceId, navigate) {
  const retry = el("button", { type: "button" }, "Try again");
  retry.addEventListener("click", () => navigate(window.location.pathname + window.location.search, { replace: true }));
  replace(
    main,
    el("h1", {}, "Trace not found"),
    el("p", { class: "notice", role: "alert" }, "The store has no span of trace ", el("code", {}, traceId), "."),
    el(
      "p",
      {},
      "Its spans may still be on their way (services send them in batches every few seconds), the tail sampler may have ",
      "dropped it, or retention may have removed it.",
    ),
    el("p", {}, retry, " ", el("a", { href: "/" }, "Search traces")),
  );
}

function summary(trace, frame) {
  const spans = trace.spans;
  const root = spans.find((s) => !s.parent_span_id) || spans[0];
  const services = [...new Set(spans.map((s) => s.service))].sort();
  const errors = spans.filter((s) => s.status && s.status.code === "ERROR").length;
  const outcome = spans.map((s) => s.attributes && s.attributes["booking.outcome"]).find(Boolean);
  return el(
    "dl",
    { class: "summary" },
    el("div", {}, el("dt", {}, "Trace id"), el("dd", {}, el("code", { id: "trace-id" }, trace.trace_id))),
    el("div", {}, el("dt", {}, "Started"), el("dd", {}, timeElement(root.start_time))),
    el("div", {}, el("dt", {}, "Duration"), el("dd", {}, formatDuration(frame.total))),
    el("div", {}, el("dt", {}, "Spans"), el("dd", {}, String(spans.length))),
    el("div", {}, el("dt", {}, "Errors"), el("dd", {}, errors ? el("span", { class: "badge error" }, String(errors)) : "0")),
    outcome ? el("div", {}, el("dt", {}, "Booking outcome"), el("dd", {}, el("span", { class: `badge outcome-${outcome === "confirmed" ? "good" : "bad"}` }, outcome))) : null,
    el("div", {}, el("dt", {}, "Sampling"), el("dd", {}, el("span", { class: `badge sampling-${trace.sampling || "kept"}` }, trace.sampling || "kept"))),
    el("div", { class: "wide" }, el("dt", {}, `Services (${services.length})`), el("dd", { class: "chips" }, services.map(serviceChip))),
  );
}

export async function renderTrace(main, { traceId, params, navigate, signal }) {
  replace(main, el("h1", {}, "Trace ", el("code", {}, traceId)), el("p", { class: "status", role: "status" }, "Loading trace…"));
  let trace;
  try {
    trace = await getJson(`traces/${encodeURIComponent(traceId)}`, {}, { signal });
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 404) return notFound(main, traceId, navigate);
    throw exc;
  }
  const spansById = new Map(trace.spans.map((s) => [s.span_id, s]));
  const detail = el(
    "aside",
    { class: "span-detail", id: "span-detail", "aria-label": "Span details" },
    el("p", { class: "muted" }, "Choose a span to see its attributes, events, links and logs."),
  );
  let detailAborter = null;
  let chart = null;

  function showSpan(spanId, { focus = false, updateUrl = true } = {}) {
    const span = chart.select(spanId, { focus });
    if (!span) return;
    if (detailAborter) detailAborter.abort();
    detailAborter = new AbortController();
    replace(detail, spanDetail(span, chart.frame, { traceId: trace.trace_id, spansById, onSpan: (id) => showSpan(id, { focus: true }), signal: detailAborter.signal }));
    if (updateUrl) {
      const url = `/traces/${encodeURIComponent(trace.trace_id)}?span=${encodeURIComponent(spanId)}`;
      window.history.replaceState(null, "", url);
    }
  }

  chart = waterfall(trace.spans, { onSelect: (span) => showSpan(span.span_id) });
  const reload = el("button", { type: "button", class: "secondary small" }, "Reload");
  reload.addEventListener("click", () => navigate(window.location.pathname + window.location.search, { replace: true }));
  const root = trace.spans.find((s) => !s.parent_span_id) || trace.spans[0];
  document.title = `${root.name} (${root.service}) · Trace · Bookline telemetry`;
  const traceLogs = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const logsSection = el("details", { class: "trace-logs", id: "trace-logs" }, el("summary", {}, "Logs of this trace"), traceLogs);
  let logsLoaded = false;
  logsSection.addEventListener("toggle", () => {
    if (!logsSection.open || logsLoaded) return;
    logsLoaded = true;
    getJson("logs", { trace_id: trace.trace_id, limit: 500 }, { signal })
      .then(({ logs }) => replace(traceLogs, logList(logs, { onSpan: (id) => showSpan(id, { focus: true }) })))
      .catch((exc) => {
        if (exc.name !== "AbortError") replace(traceLogs, el("p", { class: "notice error" }, `Logs unavailable: ${exc.message}`));
      });
  });

  replace(
    main,
    el("div", { class: "title-row" }, el("h1", {}, root.name, el("span", { class: "muted" }, ` · ${root.service}`)), reload),
    summary(trace, chart.frame),
    trace.sampling === "pending"
      ? el("p", { class: "notice" }, "This trace is waiting for its tail-sampling decision: it may still be dropped, and late spans may still arrive.")
      : null,
    el("div", { class: "trace-layout" }, el("section", { "aria-label": "Waterfall" }, chart.node), detail),
    logsSection,
  );
  const wanted = params.get("span");
  if (wanted && spansById.has(wanted)) showSpan(wanted, { updateUrl: false });
  return () => detailAborter && detailAborter.abort();
}
