// The booking dashboard (/dashboard): bookings per minute by status and source, booking.duration_ms
// percentiles, lock contentions, rollbacks by reason, payment outcomes (GET /api/dashboard, from the
// unsampled metrics) and the tail sampler's counters (GET /api/sampling), refreshed every 10 s.

import { getJson } from "./api.js";
import { horizontalBars, stackedBars } from "./charts.js";
import { el, replace } from "./dom.js";
import { formatDuration, seriesColor } from "./format.js";

const REFRESH_MS = 10_000;
const SPANS = [
  ["15", "15 minutes"],
  ["60", "1 hour"],
  ["180", "3 hours"],
  ["720", "12 hours"],
];
const STATUS_HUES = { success: 145, failed: 0, timeout: 32 };
// payment.status values read as good, bad or neutral, coloured like the booking statuses
const PAYMENT_TONE = { authorized: "success", captured: "success", declined: "failed", error: "failed", voided: "timeout", refunded: "timeout" };

function statusColor(status, shade) {
  const hue = STATUS_HUES[status];
  if (hue === undefined) return null;
  return `hsl(${hue} 58% ${40 + (shade % 4) * 10}%)`;
}

function bookingSeries(rows) {
  const shades = new Map();
  return [...rows]
    .sort((a, b) => String(a.status).localeCompare(String(b.status)) || String(a.source).localeCompare(String(b.source)))
    .map((row, k) => {
      const shade = shades.get(row.status) || 0;
      shades.set(row.status, shade + 1);
      return {
        name: `${row.status ?? "unknown"} · ${row.source ?? "unknown"}`,
        values: row.counts || [],
        color: statusColor(row.status, shade) || seriesColor(k),
      };
    });
}

// the store may give contentions as plain counts per minute, or as series with their own counts
function contentionSeries(value) {
  if (!Array.isArray(value) || !value.length) return [];
  if (typeof value[0] === "number") return [{ name: "lock contentions", values: value, color: "hsl(32 80% 45%)" }];
  return value.map((row, k) => ({
    name: row.property_id || row["booking.property_id"] || row.name || `series ${k + 1}`,
    values: row.counts || [],
  }));
}

function tile(label, value, { id, tone } = {}) {
  return el("div", { class: `tile${tone ? ` ${tone}` : ""}`, id }, el("div", { class: "tile-value" }, value), el("div", { class: "tile-label" }, label));
}

function sum(values) {
  return (values || []).reduce((a, b) => a + (Number(b) || 0), 0);
}

function panel(title, id, ...content) {
  return el("section", { class: "panel", id, "aria-labelledby": `${id}-title` }, el("h2", { id: `${id}-title` }, title), ...content);
}

function render(body, data, sampling, updated) {
  const minutes = data.minutes || [];
  const bookings = bookingSeries(data.bookings_per_minute || []);
  const total = bookings.reduce((n, s) => n + sum(s.values), 0);
  const byStatus = new Map();
  for (const row of data.bookings_per_minute || []) byStatus.set(row.status, (byStatus.get(row.status) || 0) + sum(row.counts));
  const contentions = contentionSeries(data.lock_contentions_per_minute);
  const duration = data.duration_ms || {};
  const rollbacks = (data.rollbacks || []).map((r) => ({ label: String(r.reason ?? "unknown"), value: r.count, color: "hsl(0 60% 50%)" }));
  const payments = (data.payment_outcomes || []).map((p, k) => ({
    label: `${p.status ?? "unknown"} · ${p.method ?? "unknown"}`,
    value: p.count,
    color: statusColor(PAYMENT_TONE[p.status], k) || seriesColor(k),
  }));
  // a refresh must not close the data tables a reader opened
  const openTables = new Set([...body.querySelectorAll("section.panel")].filter((s) => s.querySelector("details[open]")).map((s) => s.id));
  replace(
    body,
    el(
      "div",
      { class: "tiles", id: "dash-tiles" },
      tile("bookings", String(total), { id: "tile-bookings" }),
      [...byStatus].sort().map(([status, count]) => tile(String(status), String(count), { tone: status === "success" ? "good" : "bad" })),
      tile("duration p50", formatDuration(duration.p50), { id: "tile-p50" }),
      tile("duration p95", formatDuration(duration.p95), { id: "tile-p95" }),
      tile("duration p99", formatDuration(duration.p99), { id: "tile-p99" }),
      tile("lock contentions", String(contentions.reduce((n, s) => n + sum(s.values), 0)), { id: "tile-contentions" }),
    ),
    el(
      "div",
      { class: "panels" },
      panel(
        "Bookings per minute, by status and source",
        "dash-bookings",
        bookings.length
          ? stackedBars({ labels: minutes, series: bookings, caption: "Bookings per minute by status and source" })
          : el("p", { class: "muted empty" }, "No booking in this window yet."),
      ),
      panel(
        "Lock contentions per minute",
        "dash-contentions",
        contentions.length && contentions.some((s) => sum(s.values) > 0)
          ? stackedBars({ labels: minutes, series: contentions, caption: "Lock contentions per minute" })
          : el("p", { class: "muted empty" }, "No lock contention in this window."),
      ),
      panel("Rollbacks by reason", "dash-rollbacks", horizontalBars(rollbacks, { caption: "Rollbacks by reason", empty: "No rollback in this window." })),
      panel("Payment outcomes", "dash-payments", horizontalBars(payments, { caption: "Payment outcomes by status and method", empty: "No payment in this window." })),
      sampling
        ? panel(
            "Tail sampling",
            "dash-sampling",
            el(
              "div",
              { class: "tiles" },
              tile("traces kept", String(sampling.kept), { tone: "good" }),
              tile("traces dropped", String(sampling.dropped)),
              tile("awaiting decision", String(sampling.pending)),
              tile("decision wait", `${sampling.decision_wait_s} s`),
            ),
            el("p", { class: "muted" }, "Policies: ", (sampling.policies || []).join(", ") || "none"),
          )
        : null,
    ),
    el("p", { class: "muted updated" }, "Updated ", el("time", { datetime: updated.toISOString() }, updated.toLocaleTimeString()), ", every 10 s."),
  );
  for (const id of openTables) {
    const details = document.getElementById(id)?.querySelector("details");
    if (details) details.open = true;
  }
}

export async function renderDashboard(main, { params, navigate, signal }) {
  const minutes = SPANS.some(([v]) => v === params.get("minutes")) ? params.get("minutes") : "60";
  const choose = el(
    "select",
    { id: "dash-window" },
    SPANS.map(([value, text]) => el("option", { value, selected: value === minutes }, text)),
  );
  choose.addEventListener("change", () => navigate(`/dashboard?minutes=${choose.value}`, { replace: true }));
  const status = el("p", { class: "status", role: "status" });
  const body = el("div", { class: "dashboard", id: "dashboard" }, el("p", { class: "muted" }, "Loading…"));
  replace(main, el("h1", {}, "Bookings dashboard"), el("div", { class: "field inline" }, el("label", { for: "dash-window" }, "Last"), choose), status, body);

  let inFlight = false;
  async function refresh() {
    if (inFlight || document.hidden) return;
    inFlight = true;
    try {
      const [data, sampling] = await Promise.all([
        getJson("dashboard", { minutes }, { signal }),
        getJson("sampling", {}, { signal }).catch((exc) => {
          if (exc.name === "AbortError") throw exc;
          return null; // the dashboard stands without the sampler's counters
        }),
      ]);
      render(body, data, sampling, new Date());
      replace(status);
    } catch (exc) {
      if (exc.name !== "AbortError") replace(status, el("span", { class: "notice error" }, `Refresh failed: ${exc.message}`));
    } finally {
      inFlight = false;
    }
  }
  await refresh();
  const timer = window.setInterval(refresh, REFRESH_MS);
  return () => window.clearInterval(timer);
}
