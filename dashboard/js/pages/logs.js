// Logs: a live tail of each service and each runner, with a level filter, a text search that highlights
// its matches, pause, and a download of what is shown.
import { api, el } from "../api.js";

let unsubscribe = null;
const LEVELS = ["trace", "debug", "info", "warning", "error"];

/** A line's level: the third word of our services' lines (`<time> <service> <level> …`); for a runner's
 *  own output (llama-server, whisper-server), guessed from its words. */
export function levelOf(line) {
  const word = line.split(" ", 3)[2];
  if (LEVELS.includes(word)) return word;
  if (/\b(error|failed|fatal|abort)/i.test(line)) return "error";
  if (/\bwarn/i.test(line)) return "warning";
  return "info";
}

// Live lines arrive as `log` events; the first screen comes from /api/logs.
export async function render(main, { onEvent }) {
  const services = ["gateway", "runner-manager", "model-registry", "metrics-service", "launcher"];
  const status = await api("/api/status").catch(() => ({ models: [] }));
  const source = el("select", { id: "log-source", "aria-label": "log" },
    services.map((s) => el("option", { value: s }, s)), status.models.map((m) => el("option", { value: m.id }, `runner: ${m.id}`)));
  const level = el("select", { id: "log-level", "aria-label": "lowest level shown" },
    LEVELS.map((l) => el("option", { value: l, selected: l === "trace" }, l === "trace" ? "all levels" : `${l} and above`)));
  const filter = el("input", { id: "log-filter", type: "search", placeholder: "search", "aria-label": "search the log" });
  const pause = el("input", { type: "checkbox", id: "log-pause" });
  const download = el("button", { id: "log-download", onclick: save }, "Download");
  const count = el("span", { class: "muted", id: "log-count" });
  const lines = el("pre", { class: "log", id: "log-lines", tabindex: "0", "aria-label": "log lines" });
  main.append(el("div", { class: "card" },
    el("div", { class: "toolbar" }, source, level, filter, el("label", { for: "log-pause" }, pause, " pause"), download, count), lines));
  let all = [];
  let error = "";

  async function poll() {
    try {
      const r = await api(`/api/logs/${encodeURIComponent(source.value)}?tail=1000`);
      all = Array.isArray(r) ? r : r.lines;
      error = "";
    } catch (e) { all = []; error = `(${e.message})`; }
    show();
  }

  function shown() {
    const min = LEVELS.indexOf(level.value);
    const f = filter.value.toLowerCase();
    return all.filter((l) => LEVELS.indexOf(levelOf(l)) >= min && (!f || l.toLowerCase().includes(f)));
  }

  function show() {
    if (pause.checked) return;
    const list = shown();
    const f = filter.value;
    const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    lines.replaceChildren(...(error ? [error] : []), ...list.slice(-2000).map((line) => {
      const node = el("span", { class: `line ${levelOf(line)}` });
      if (f) {
        // Matches are marked case-insensitively; the text stays text (no HTML from a log line).
        const lower = line.toLowerCase(), needle = f.toLowerCase();
        let at = 0, i;
        while ((i = lower.indexOf(needle, at)) >= 0) {
          node.append(line.slice(at, i), el("mark", {}, line.slice(i, i + needle.length)));
          at = i + needle.length;
        }
        node.append(line.slice(at));
      } else node.append(line);
      node.append("\n");
      return node;
    }));
    count.textContent = `${list.length} of ${all.length} lines`;
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  }

  function save() {
    const blob = new Blob([shown().join("\n") + "\n"], { type: "text/plain" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${source.value}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  source.addEventListener("change", poll);
  for (const c of [level, filter]) c.addEventListener("input", show);
  level.addEventListener("change", show);
  pause.addEventListener("change", show);
  await poll();
  const wanted = () => (services.includes(source.value) ? source.value : `runner:${source.value}`);
  unsubscribe = onEvent(({ type, data }) => {
    if (type !== "log" || data.source !== wanted()) return;
    all.push(data.line);
    if (all.length > 5000) all.splice(0, all.length - 5000);
    show();
  });
}

export function leave() { if (unsubscribe) unsubscribe(); }
