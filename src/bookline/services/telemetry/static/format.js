// How values look on the page: durations, times, attribute values and the colour of each service.

import { el } from "./dom.js";

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 100) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** Local wall-clock time with milliseconds, the way a person reads a trace list. */
function formatTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A <time> element: local time shown, the exact UTC instant kept for machines and tooltips. */
export function timeElement(iso) {
  return el("time", { datetime: iso, title: iso }, formatTime(iso));
}

/** Unix nanoseconds (a number that may exceed 2^53: precision below a microsecond is not needed here). */
export function nanosToMs(nanos) {
  return Number(nanos) / 1e6;
}

export function formatValue(value) {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(formatValue).join(", ")}]`;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// the six Bookline services get fixed, well-separated hues; anything else a stable hashed one
const KNOWN_HUES = {
  "booking-service": 212,
  "availability-service": 145,
  "pricing-engine": 38,
  "confirmation-service": 280,
  "payment-gateway": 340,
  "notification-service": 180,
  telemetry: 0,
};

function hueOf(service) {
  if (service in KNOWN_HUES) return KNOWN_HUES[service];
  let hash = 0;
  for (const ch of String(service)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function serviceColor(service) {
  return `hsl(${hueOf(service)} 62% 48%)`;
}

/** A small coloured label naming a service. */
export function serviceChip(service) {
  return el("span", { class: "chip", style: { "--chip": serviceColor(service) } }, service);
}

/** Colour of a chart series from its index, distinct for the first ten. */
export function seriesColor(index) {
  const hues = [212, 145, 0, 38, 280, 180, 340, 90, 250, 20];
  const hue = hues[index % hues.length];
  const light = index < hues.length ? 48 : 34;
  return `hsl(${hue} 60% ${light}%)`;
}
