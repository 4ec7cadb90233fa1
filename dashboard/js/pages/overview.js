// Overview: service health, loaded models with memory bars, charts of requests/s, time to first
// token and tokens/s (refreshed by the metrics ticks), and the last requests.
import { api, el, bytes } from "../api.js";
import { lineChart } from "../chart.js";

let unsubscribe = null;

export async function render(main, { onEvent }) {
  const health = el("div", { class: "card", id: "health" }, el("h2", {}, "Services"));
  const loaded = el("div", { class: "card", id: "loaded" }, el("h2", {}, "Loaded models"));
  const charts = ["requests_per_second", "ttft_p50_ms", "tokens_per_second"].map((name) => el("div", { class: "card chart", id: `chart-${name}` }));
  const recent = el("div", { class: "card", id: "recent" }, el("h2", {}, "Last requests"));
  main.append(el("div", { class: "grid" }, health, loaded), el("div", { class: "grid", style: "margin-top:14px" }, charts),
              el("div", { style: "margin-top:14px" }, recent));
  const refresh = async () => {
    const status = await api("/api/status");
    health.replaceChildren(el("h2", {}, "Services"), el("table", {}, Object.entries(status.health.services || {}).map(([name, s]) =>
      el("tr", {}, el("td", {}, name), el("td", { class: s.status === "ok" ? "ok" : "bad" }, s.status), el("td", { class: "muted" }, `pid ${s.pid}`)))),
      ...(status.health.down || []).map((d) => el("div", { class: "error" }, `${d} is down`)));
    const ready = status.runners.filter((r) => r.state === "ready");
    const most = Math.max(1, ...ready.map((r) => r.rssBytes || r.memoryEstimateBytes));
    loaded.replaceChildren(el("h2", {}, "Loaded models"), ready.length ? el("div", {}, ready.map((r) =>
      el("div", { style: "margin-bottom:8px", "data-model": r.model }, el("b", {}, r.model), " ",
         el("span", { class: "muted" }, `${bytes(r.rssBytes)} · ${r.activeLeases} active`),
         el("div", { class: "bar" }, el("span", { style: `width:${Math.round(100 * (r.rssBytes || r.memoryEstimateBytes) / most)}%` }))))) : el("div", { class: "muted" }, "none"));
    for (const [name, label, unit] of [["requests_per_second", "Requests/s", ""], ["ttft_p50_ms", "Time to first token (p50)", "ms"], ["tokens_per_second", "Tokens/s", ""]]) {
      const series = await api(`/api/metrics/series?name=${name}&window=1h`);
      lineChart(document.getElementById(`chart-${name}`), series.points.slice(-150), { label, unit });
    }
    const requests = await api("/api/requests?limit=10");
    recent.replaceChildren(el("h2", {}, "Last requests"), el("table", {},
      el("tr", {}, ["Time", "Model", "Route", "Status", "TTFB", "Tokens"].map((h) => el("th", {}, h))),
      requests.map((r) => el("tr", {}, el("td", {}, new Date(r.at * 1000).toLocaleTimeString()), el("td", {}, r.record.model),
        el("td", {}, r.record.route), el("td", { class: r.record.status < 400 ? "ok" : "bad" }, String(r.record.status)),
        el("td", {}, `${r.record.timeToFirstByteMs.toFixed(0)} ms`), el("td", {}, String(r.record.completionTokens))))));
  };
  await refresh();
  unsubscribe = onEvent(({ type }) => { if (type === "metrics" || type === "runner") refresh().catch(() => {}); });
}

export function leave() { if (unsubscribe) unsubscribe(); }
