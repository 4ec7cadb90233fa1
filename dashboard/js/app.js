// The dashboard shell: hash routing, the live event stream (EventSource reconnects by itself), and
// a small event bus the pages listen to.
import { apiBase } from "./api.js";
import * as overview from "./pages/overview.js";
import * as activity from "./pages/activity.js";
import * as models from "./pages/models.js";
import * as logs from "./pages/logs.js";
import * as config from "./pages/config.js";
import * as playground from "./pages/playground.js";

const pages = { overview, activity, models, logs, config, playground };
const listeners = new Set();
let current = null;

/** Pages subscribe to live events ({type, data}); returns the unsubscribe function. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

async function connectEvents() {
  const live = document.getElementById("live");
  const source = new EventSource(`${await apiBase()}/api/events`);
  const banner = document.getElementById("banner");
  source.onopen = () => { live.textContent = "live"; live.className = "badge ok"; watchHealth(); };
  source.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "badge bad";
    banner.textContent = "The gateway's dashboard API is not answering: reconnecting by itself…";
    banner.hidden = false;
  };
  for (const type of ["runner", "registry", "metrics", "log", "pull", "request", "host", "hello"]) {
    source.addEventListener(type, (e) => {
      const data = JSON.parse(e.data);
      for (const fn of listeners) fn({ type, data });
    });
  }
}

async function route() {
  const name = (location.hash.replace(/^#\//, "") || "overview").split("/")[0];
  const page = pages[name] || pages.overview;
  if (current && current.leave) current.leave();
  current = page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  const main = document.getElementById("page");
  main.innerHTML = "";
  main.dataset.page = name;
  await page.render(main, { onEvent });
}

// A service that stops answering is said at the top of every page until it is back (the launcher
// restarts it by itself); the event stream's own outage is said by connectEvents.
async function watchHealth() {
  const banner = document.getElementById("banner");
  try {
    const response = await fetch(`${await apiBase()}/api/health`);
    const report = await response.json();
    const down = report.down || [];
    banner.hidden = down.length === 0;
    banner.textContent = down.length ? `${down.join(", ")} ${down.length > 1 ? "are" : "is"} not answering: what depends on ${down.length > 1 ? "them" : "it"} waits until the launcher has restarted ${down.length > 1 ? "them" : "it"}.` : "";
    banner.dataset.down = down.join(",");
  } catch {
    banner.hidden = false;
    banner.textContent = "The gateway's dashboard API is not answering: reconnecting by itself…";
  }
}

window.addEventListener("hashchange", route);
connectEvents();
route();
watchHealth();
setInterval(watchHealth, 3000);
