// Logs: a live tail of each service and each runner, with a filter and pause.
import { api, el } from "../api.js";

let unsubscribe = null;

// Live lines arrive as `log` events; the first screen comes from /api/logs.
export async function render(main, { onEvent }) {
  const services = ["gateway", "runner-manager", "model-registry", "metrics-service", "launcher"];
  const status = await api("/api/status");
  const source = el("select", { id: "log-source" },
    services.map((s) => el("option", { value: s }, s)), status.models.map((m) => el("option", { value: m.id }, `runner: ${m.id}`)));
  const filter = el("input", { id: "log-filter", placeholder: "filter" });
  const pause = el("input", { type: "checkbox", id: "log-pause" });
  const lines = el("pre", { class: "log", id: "log-lines" });
  main.append(el("div", { class: "card" }, el("div", { class: "row" }, source, filter, el("label", {}, pause, " pause")), lines));
  let all = [];
  async function poll() {
    if (!pause.checked) {
      try {
        const r = await api(`/api/logs/${encodeURIComponent(source.value)}?tail=400`);
        all = Array.isArray(r) ? r : r.lines;
      } catch (e) { all = [`(${e.message})`]; }
      show();
    }
  }
  function show() {
    const f = filter.value.toLowerCase();
    const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    lines.textContent = all.filter((l) => !f || l.toLowerCase().includes(f)).join("\n");
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  }
  source.addEventListener("change", poll);
  filter.addEventListener("input", show);
  await poll();
  const wanted = () => (services.includes(source.value) ? source.value : `runner:${source.value}`);
  unsubscribe = onEvent(({ type, data }) => {
    if (type !== "log" || pause.checked || data.source !== wanted()) return;
    all.push(data.line);
    if (all.length > 2000) all.splice(0, all.length - 2000);
    show();
  });
}

export function leave() { if (unsubscribe) unsubscribe(); }
