// Overview: service health; the machine's memory (RAM and each GPU, with utilisation and temperature);
// loaded models with their memory bars and queues; figures per model; charts of requests/s, error rate,
// time to first token and tokens/s (refreshed by the metrics ticks); and the last requests.
import { api, el, bytes } from "../api.js";
import { lineChart } from "../chart.js";
import { tokensPerSecond } from "./activity.js";

let unsubscribe = null;
const CHARTS = [["requests_per_second", "Requests/s", "req/s"], ["error_rate", "Error rate", "%"],
                ["ttft_p50_ms", "Time to first token (p50)", "ms"], ["tokens_per_second", "Tokens/s", "tok/s"]];

export async function render(main, { onEvent }) {
  const health = el("div", { class: "card", id: "health" }, el("h2", {}, "Services"));
  const hardware = el("div", { class: "card", id: "hardware" }, el("h2", {}, "Memory and devices"));
  const loaded = el("div", { class: "card", id: "loaded" }, el("h2", {}, "Loaded models"));
  const perModel = el("div", { class: "card", id: "per-model" }, el("h2", {}, "Per model (last 5 minutes)"));
  const charts = CHARTS.map(([name]) => el("div", { class: "card chart", id: `chart-${name}` }));
  const recent = el("div", { class: "card", id: "recent" }, el("h2", {}, "Last requests"));
  const peers = el("div", { class: "card", id: "peers", hidden: true }, el("h2", {}, "Peers"));
  const hostsCard = el("div", { class: "card", id: "hosts", hidden: true }, el("h2", {}, "Hosts"));
  main.append(el("div", { class: "grid" }, health, hardware, loaded, hostsCard, peers), el("div", { class: "grid", style: "margin-top:14px" }, charts),
              el("div", { class: "grid", style: "margin-top:14px" }, perModel), el("div", { style: "margin-top:14px" }, recent));
  let busy = false;
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try { await draw(); } finally { busy = false; }
  };
  const draw = async () => {
    const status = await api("/api/status");
    health.replaceChildren(el("h2", {}, "Services"), el("table", {}, Object.entries(status.health.services || {}).map(([name, s]) =>
      el("tr", {}, el("td", {}, name), el("td", { class: s.status === "ok" ? "ok" : "bad" }, s.status), el("td", { class: "muted" }, `pid ${s.pid}`)))),
      ...(status.health.down || []).map((d) => el("div", { class: "error" }, `${d} is down`)));

    const hw = await api("/api/hardware").catch(() => null);
    hardware.replaceChildren(el("h2", {}, "Memory and devices"), ...(hw ? hw.devices.map((d) => {
      const used = d.usedBytes != null ? d.usedBytes : d.totalBytes - d.freeBytes;
      const share = d.totalBytes ? Math.round((100 * used) / d.totalBytes) : 0;
      const extra = [d.utilizationPercent != null ? `${d.utilizationPercent.toFixed(0)} % busy` : "",
                     d.temperatureCelsius != null ? `${d.temperatureCelsius.toFixed(0)} °C` : "",
                     d.powerWatts != null ? `${d.powerWatts.toFixed(0)} W` : ""].filter(Boolean).join(" · ");
      return el("div", { class: "device", "data-device": d.id, style: "margin-bottom:8px" },
        el("b", {}, d.kind === "cpu" ? "System RAM" : d.name || d.id), " ",
        el("span", { class: "muted" }, `${bytes(used)} of ${bytes(d.totalBytes)} used${extra ? " · " + extra : ""}`),
        el("div", { class: "bar", role: "meter", "aria-label": `${d.kind === "cpu" ? "RAM" : d.name} used`, "aria-valuenow": String(share),
                    "aria-valuemin": "0", "aria-valuemax": "100" }, el("span", { style: `width:${share}%` })));
    }) : [el("div", { class: "muted" }, "runner-manager does not answer")]),
      ...(hw && hw.problems.length ? hw.problems.map((p) => el("div", { class: "error" }, p)) : []));

    // The runner-managers models are placed on (app_config.json hosts); hidden on one machine.
    const hostList = await api("/api/hosts").catch(() => []);
    hostsCard.hidden = hostList.length < 2;
    // One row per host: its name and address with what it holds (or why it is down) under them, and its state.
    hostsCard.replaceChildren(el("h2", {}, "Hosts"), el("table", {}, hostList.map((h) => {
      const detail = h.state === "down" ? (h.error || "not answering") :
        `${h.freeBytes != null ? bytes(h.freeBytes) + " free · " : ""}${h.models.length} models · ` +
        (h.runners.filter((r) => r.state === "ready").map((r) => r.model).join(", ") || "nothing loaded");
      return el("tr", { "data-host": h.name },
        el("td", {}, el("b", {}, h.name), " ", el("span", { class: "muted" }, h.address === "local" ? "this machine" : h.address),
          el("div", { class: "muted detail", title: detail, style: "overflow-wrap:anywhere" }, detail.length > 140 ? detail.slice(0, 140) + "…" : detail)),
        el("td", { class: h.state === "up" ? "ok" : h.state === "down" ? "bad" : "" }, h.state));
    })));

    // Other servers whose models are offered as peer/model (app_config.json peers); hidden when there are none.
    const peerList = await api("/api/peers").catch(() => []);
    peers.hidden = !peerList.length;
    peers.replaceChildren(el("h2", {}, "Peers"), el("table", {}, peerList.map((p) =>
      el("tr", { "data-peer": p.name }, el("td", {}, el("b", {}, p.name), el("div", { class: "muted" }, p.baseURL)),
        el("td", { class: p.state === "up" ? "ok" : p.state === "down" ? "bad" : "" }, p.state),
        el("td", { class: "muted" }, p.state === "down" ? (p.error || "") : `${p.models.length} models${p.latencyMs != null ? ` · ${p.latencyMs.toFixed(0)} ms` : ""}`)))));

    const ready = status.runners.filter((r) => r.state === "ready" || r.state === "loading" || r.state === "starting");
    const heldBy = (r) => Object.values(r.memoryByDevice || {}).reduce((a, b) => a + b, 0) || r.rssBytes || r.memoryEstimateBytes;
    const most = Math.max(1, ...ready.map(heldBy));
    loaded.replaceChildren(el("h2", {}, "Loaded models"), ready.length ? el("div", {}, ready.map((r) =>
      el("div", { style: "margin-bottom:8px", "data-model": r.model }, el("b", {}, r.model), " ",
         el("span", { class: "muted" }, `${r.host ? r.host + " · " : ""}${r.state} · ${bytes(heldBy(r))}${r.devices && r.devices.length ? " on " + r.devices.map((d) => d.slice(0, 12)).join(", ") : ""} · ${r.activeLeases} active · ${r.queued} queued`),
         el("div", { class: "bar", role: "meter", "aria-label": `${r.model} memory`, "aria-valuenow": String(heldBy(r)), "aria-valuemin": "0", "aria-valuemax": String(most) },
            el("span", { style: `width:${Math.round(100 * heldBy(r) / most)}%` }))))) : el("div", { class: "muted" }, "none"));

    const summary = await api("/api/metrics/summary").catch(() => null);
    const rows = summary ? Object.entries(summary.models).sort((a, b) => b[1].requests - a[1].requests) : [];
    const queued = Object.fromEntries(status.runners.map((r) => [r.model, r.queued]));
    perModel.replaceChildren(el("h2", {}, summary ? `Per model (last ${Math.round(summary.windowSeconds / 60)} minutes)` : "Per model"), rows.length ? el("div", { class: "scroll" }, el("table", { id: "model-figures" },
      el("tr", {}, ["Model", "Requests", "Req/s", "Errors", "TTFT p50", "Tokens/s", "Queue"].map((h) => el("th", { scope: "col" }, h))),
      rows.map(([model, f]) => el("tr", { "data-model": model }, el("td", {}, model), el("td", {}, String(f.requests)), el("td", {}, f.requestsPerSecond.toFixed(2)),
        el("td", { class: f.errors ? "bad" : "" }, `${f.errors} (${(100 * f.errorRate).toFixed(1)} %)`),
        el("td", {}, f.timeToFirstTokenP50Ms == null ? "–" : `${f.timeToFirstTokenP50Ms.toFixed(0)} ms`),
        el("td", {}, f.tokensPerSecond == null ? "–" : f.tokensPerSecond.toFixed(1)), el("td", {}, String(queued[model] ?? 0)))))) : el("div", { class: "muted" }, "no requests yet"));

    for (const [name, label, unit] of CHARTS) {
      const series = await api(`/api/metrics/series?name=${name}&window=1h`);
      const points = series.points.slice(-150).map(([t, v]) => [t, v != null && name === "error_rate" ? 100 * v : v]);
      lineChart(document.getElementById(`chart-${name}`), points, { label, unit });
    }
    const requests = await api("/api/requests?limit=10");
    recent.replaceChildren(el("h2", {}, "Last requests"), el("div", { class: "scroll" }, el("table", {},
      el("tr", {}, ["Time", "Model", "Route", "Status", "TTFT", "Tokens", "Tokens/s"].map((h) => el("th", { scope: "col" }, h))),
      requests.map((r) => el("tr", {}, el("td", {}, new Date(r.at * 1000).toLocaleTimeString()), el("td", {}, r.record.model),
        el("td", {}, r.record.route), el("td", { class: r.record.status < 400 ? "ok" : "bad" }, String(r.record.status)),
        el("td", {}, `${r.record.timeToFirstByteMs.toFixed(0)} ms`), el("td", {}, String(r.record.completionTokens)),
        el("td", {}, tokensPerSecond(r.record) == null ? "–" : tokensPerSecond(r.record).toFixed(1)))))));
  };
  await refresh();
  unsubscribe = onEvent(({ type }) => { if (type === "metrics" || type === "runner" || type === "host") refresh().catch(() => {}); });
}

export function leave() { if (unsubscribe) unsubscribe(); }
