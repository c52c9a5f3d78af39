// The trace search: a form with every filter of GET /api/traces, kept in the page URL (so a search
// can be shared and the back button works), and a table of the matching traces, newest first.

import { getJson } from "./api.js";
import { el, replace } from "./dom.js";
import { formatDuration, serviceChip, timeElement } from "./format.js";

const OUTCOMES = ["confirmed", "unavailable", "contention", "declined", "payment_error", "expired", "failed"];
const STATUSES = [
  ["", "any"],
  ["error", "error"],
  ["ok", "ok"],
  ["unset", "unset"],
];
const PLAIN_FILTERS = ["service", "name", "status", "outcome", "min_duration_ms", "max_duration_ms", "since", "until"];
const DEFAULT_LIMIT = 20;

function pad(n) {
  return String(n).padStart(2, "0");
}

// <input type=datetime-local> speaks local time without a zone; the API and the URL speak UTC ISO 8601
function isoToLocalInput(value) {
  if (!value) return "";
  const d = /^\d+$/.test(value) ? new Date(Number(value)) : new Date(value);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function localInputToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** The filters of the page URL as query parameters of /api/traces. */
function apiParams(urlParams) {
  const params = {};
  for (const key of PLAIN_FILTERS) {
    const value = urlParams.get(key);
    if (value) params[key] = value;
  }
  for (const [key, value] of urlParams) {
    if (key.startsWith("attr.") && key.length > 5) params[key] = value;
  }
  params.limit = urlParams.get("limit") || DEFAULT_LIMIT;
  return params;
}

function field(label, control) {
  return el("div", { class: "field" }, el("label", { for: control.id }, label), control);
}

function select(id, name, options, current) {
  return el(
    "select",
    { id, name },
    options.map(([value, text]) => el("option", { value, selected: value === (current || "") }, text)),
  );
}

let attrRows = 0;

function attrRow(key = "", value = "") {
  const row = el("div", { class: "attr-row" });
  const index = ++attrRows;
  const keyInput = el("input", {
    id: `attr-key-${index}`,
    class: "attr-key",
    placeholder: "attribute key, e.g. booking.source",
    value: key,
    "aria-label": "Attribute key",
  });
  const valueInput = el("input", {
    id: `attr-value-${index}`,
    class: "attr-value",
    placeholder: "value",
    value,
    "aria-label": "Attribute value",
  });
  const remove = el("button", { type: "button", class: "link", "aria-label": "Remove this attribute filter" }, "✕");
  remove.addEventListener("click", () => row.remove());
  return replace(row, keyInput, el("span", { "aria-hidden": "true" }, "="), valueInput, remove);
}

function buildForm(urlParams, onSubmit) {
  const get = (k) => urlParams.get(k) || "";
  const service = el("select", { id: "f-service", name: "service" }, el("option", { value: "" }, "any"));
  const attrs = el("div", { class: "attrs", id: "f-attrs" });
  for (const [key, value] of urlParams) {
    if (key.startsWith("attr.") && key.length > 5) attrs.appendChild(attrRow(key.slice(5), value));
  }
  const addAttr = el("button", { type: "button", class: "secondary" }, "+ attribute");
  addAttr.addEventListener("click", () => {
    const row = attrRow();
    attrs.appendChild(row);
    row.querySelector("input").focus();
  });
  const since = el("input", { id: "f-since", name: "since", type: "datetime-local", step: "1", value: isoToLocalInput(get("since")) });
  const until = el("input", { id: "f-until", name: "until", type: "datetime-local", step: "1", value: isoToLocalInput(get("until")) });
  const quick = el(
    "div",
    { class: "quick", role: "group", "aria-label": "Quick time ranges" },
    [5, 15, 60, 360, 1440].map((minutes) => {
      const button = el("button", { type: "button", class: "secondary small" }, minutes < 60 ? `last ${minutes} min` : `last ${minutes / 60} h`);
      button.addEventListener("click", () => {
        since.value = isoToLocalInput(new Date(Date.now() - minutes * 60_000).toISOString());
        until.value = "";
      });
      return button;
    }),
  );
  const form = el(
    "form",
    { class: "filters", id: "search-form", "aria-label": "Trace filters" },
    el(
      "div",
      { class: "grid" },
      field("Service", service),
      field("Span name", el("input", { id: "f-name", name: "name", value: get("name"), placeholder: "e.g. booking.create" })),
      field("Status", select("f-status", "status", STATUSES, get("status"))),
      field("Booking outcome", select("f-outcome", "outcome", [["", "any"], ...OUTCOMES.map((o) => [o, o])], get("outcome"))),
      field("Min duration (ms)", el("input", { id: "f-min", name: "min_duration_ms", type: "number", min: "0", step: "any", value: get("min_duration_ms") })),
      field("Max duration (ms)", el("input", { id: "f-max", name: "max_duration_ms", type: "number", min: "0", step: "any", value: get("max_duration_ms") })),
      field("From", since),
      field("To", until),
      field("Limit", el("input", { id: "f-limit", name: "limit", type: "number", min: "1", max: "1000", value: get("limit") || DEFAULT_LIMIT })),
    ),
    quick,
    el("fieldset", { class: "attr-set" }, el("legend", {}, "Span attributes (all must match one span)"), attrs, addAttr),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Search"), el("a", { href: "/", class: "button secondary" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(formToUrlParams(form));
  });
  return { form, service };
}

function formToUrlParams(form) {
  const params = new URLSearchParams();
  const value = (name) => form.elements[name].value.trim();
  for (const name of ["service", "name", "status", "outcome", "min_duration_ms", "max_duration_ms"]) {
    if (value(name)) params.set(name, value(name));
  }
  for (const name of ["since", "until"]) {
    const iso = localInputToIso(value(name));
    if (iso) params.set(name, iso);
  }
  for (const row of form.querySelectorAll(".attr-row")) {
    const key = row.querySelector(".attr-key").value.trim();
    if (key) params.append(`attr.${key}`, row.querySelector(".attr-value").value);
  }
  if (value("limit") && Number(value("limit")) !== DEFAULT_LIMIT) params.set("limit", value("limit"));
  return params;
}

function outcomeCell(outcome) {
  if (!outcome) return el("td", { class: "muted" }, "–");
  return el("td", {}, el("span", { class: `badge outcome-${outcome === "confirmed" ? "good" : "bad"}` }, outcome));
}

function resultRow(trace, maxDuration, navigate) {
  const href = `/traces/${encodeURIComponent(trace.trace_id)}`;
  const share = maxDuration > 0 ? Math.max(1, (trace.duration_ms / maxDuration) * 100) : 0;
  const row = el(
    "tr",
    { class: trace.error ? "trace-row has-error" : "trace-row", dataset: { traceId: trace.trace_id } },
    el("td", { class: "nowrap" }, timeElement(trace.start_time)),
    el(
      "td",
      {},
      el("a", { href, class: "root-link" }, trace.root_name || "(missing root)"),
      el("div", { class: "sub" }, trace.root_service || "", " · ", el("code", {}, trace.trace_id.slice(0, 12)), "…"),
    ),
    el("td", {}, el("div", { class: "chips" }, (trace.services || []).map(serviceChip))),
    el("td", { class: "num" }, String(trace.span_count)),
    el(
      "td",
      { class: "num duration-cell" },
      formatDuration(trace.duration_ms),
      el("span", { class: "minibar", "aria-hidden": "true" }, el("span", { style: { width: `${share}%` } })),
    ),
    outcomeCell(trace.booking_outcome),
    el("td", {}, trace.error ? el("span", { class: "badge error" }, "error") : el("span", { class: "muted" }, "no")),
    el("td", {}, el("span", { class: `badge sampling-${trace.sampling || "kept"}` }, trace.sampling || "kept")),
  );
  // the whole row opens the trace; the link inside stays the keyboard and middle-click path
  row.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    navigate(href);
  });
  return row;
}

function resultsTable(traces, navigate) {
  const maxDuration = Math.max(0, ...traces.map((t) => t.duration_ms || 0));
  return el(
    "table",
    { class: "results", id: "results" },
    el("caption", { class: "visually-hidden" }, "Matching traces, newest first"),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["Start", "Root span", "Services", "Spans", "Duration", "Outcome", "Error", "Sampling"].map((h) => el("th", { scope: "col" }, h)),
      ),
    ),
    el(
      "tbody",
      {},
      traces.map((t) => resultRow(t, maxDuration, navigate)),
    ),
  );
}

async function fillServices(select, current, signal) {
  try {
    const { services } = await getJson("services", {}, { signal });
    for (const s of services) {
      select.appendChild(el("option", { value: s.name, selected: s.name === current }, `${s.name} (${s.span_count} spans)`));
    }
    if (current && !services.some((s) => s.name === current)) {
      select.appendChild(el("option", { value: current, selected: true }, current));
    }
  } catch (exc) {
    if (exc.name === "AbortError") return;
    if (current) select.appendChild(el("option", { value: current, selected: true }, current));
  }
}

export async function renderSearch(main, { params, navigate, signal }) {
  const status = el("p", { class: "status", role: "status", "aria-live": "polite" }, "Searching…");
  const results = el("div", { class: "results-wrap" });
  const { form, service } = buildForm(params, (next) => {
    const query = next.toString();
    navigate(query ? `/?${query}` : "/");
  });
  replace(main, el("h1", {}, "Traces"), form, status, results);
  fillServices(service, params.get("service"), signal);
  try {
    const { traces } = await getJson("traces", apiParams(params), { signal });
    replace(status, traces.length === 1 ? "1 trace" : `${traces.length} traces`, traces.length ? " (newest first)" : " match these filters");
    if (traces.length) replace(results, resultsTable(traces, navigate));
    else replace(results, el("p", { class: "empty" }, "No trace matches. Widen the filters, or make a booking and search again."));
  } catch (exc) {
    if (exc.name === "AbortError") return;
    status.removeAttribute("aria-live");
    replace(status, el("span", { class: "notice error", role: "alert" }, `Search failed: ${exc.message}`));
  }
}
