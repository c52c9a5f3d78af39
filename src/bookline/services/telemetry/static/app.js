// The single-page app: history routing between the views, in-page links that do not reload, and
// the "open a trace by id" box. Every view is a module with render(main, route) -> optional cleanup.

import { el, replace } from "./dom.js";
import { renderDashboard } from "./dashboard.js";
import { renderDependencies } from "./dependencies.js";
import { renderSearch } from "./search.js";
import { renderTrace } from "./trace.js";

const TRACE_PATH = /^\/traces\/([^/]+)\/?$/;
const TITLES = {
  search: "Traces",
  trace: "Trace",
  dependencies: "Service map",
  dashboard: "Bookings dashboard",
  missing: "Not found",
};

function route(location) {
  const params = new URLSearchParams(location.search);
  const trace = TRACE_PATH.exec(location.pathname);
  if (trace) return { view: "trace", render: renderTrace, traceId: decodeURIComponent(trace[1]), params };
  if (location.pathname === "/dependencies") return { view: "dependencies", render: renderDependencies, params };
  if (location.pathname === "/dashboard") return { view: "dashboard", render: renderDashboard, params };
  if (location.pathname === "/" || location.pathname === "/index.html") {
    return { view: "search", render: renderSearch, params };
  }
  return { view: "missing", render: renderMissing, params };
}

function renderMissing(main) {
  replace(
    main,
    el("h1", {}, "Page not found"),
    el("p", {}, "There is nothing at ", el("code", {}, window.location.pathname), ". ", el("a", { href: "/" }, "Search traces"), "."),
  );
}

let cleanup = null;
let aborter = null;

async function show() {
  if (cleanup) cleanup();
  if (aborter) aborter.abort();
  cleanup = null;
  aborter = new AbortController();
  const main = document.getElementById("main");
  const current = route(window.location);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === current.view || (current.view === "trace" && link.dataset.nav === "search");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[current.view]} · Bookline telemetry`;
  main.setAttribute("aria-busy", "true");
  try {
    cleanup = (await current.render(main, { ...current, navigate, signal: aborter.signal })) || null;
  } catch (exc) {
    if (exc.name !== "AbortError") {
      replace(main, el("h1", {}, "Something went wrong"), el("p", { class: "notice error", role: "alert" }, exc.message));
    }
  } finally {
    main.removeAttribute("aria-busy");
  }
}

/** Go to an in-page URL (pushes history unless replace is set) and render its view. */
function navigate(url, { replace: replaceState = false } = {}) {
  if (replaceState) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  show().then(() => {
    const heading = document.querySelector("#main h1");
    if (heading && !replaceState) {
      // moving focus to the new heading tells screen readers the view changed
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  });
}

function isInternal(anchor) {
  if (!anchor || anchor.target || anchor.hasAttribute("download")) return false;
  if (anchor.origin !== window.location.origin) return false;
  return !/^\/(api|static|v1)(\/|$)/.test(anchor.pathname);
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const anchor = event.target.closest("a[href]");
  if (!isInternal(anchor)) return;
  event.preventDefault();
  navigate(anchor.pathname + anchor.search + anchor.hash);
});

window.addEventListener("popstate", () => show());

document.getElementById("goto").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("goto-id");
  const id = input.value.trim().toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(id)) return;
  input.value = "";
  navigate(`/traces/${id}`);
});

show();
