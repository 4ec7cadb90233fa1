// Activity: the requests being served now (with a cancel button each) and every finished request live,
// with its real figures — surface, model, route, status, time to first token, prompt/cached/completion
// tokens, tokens/s, load time, duration, client disconnects — filters, a detail view and a JSON export.
import { api, el, siteConfig } from "../api.js";

let unsubscribe = null;
let timer = null;
const KEEP = 1000;

/** Generation speed of a streamed record: completion tokens over the time after the first byte. A
 *  non-streamed answer arrives whole (its first byte comes after the generation), so it has none. */
export function tokensPerSecond(r) {
  const seconds = (r.durationMs - r.timeToFirstByteMs) / 1000;
  return r.completionTokens > 1 && seconds >= 0.02 ? r.completionTokens / seconds : null;
}

const ms = (v) => (v == null ? "–" : v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`);

export async function render(main, { onEvent }) {
  let rows = [];
  let selected = null;
  const inflight = el("table", { id: "inflight", "aria-label": "requests in flight" });
  const inflightNote = el("div", { class: "muted", id: "inflight-empty" });
  const model = el("select", { id: "filter-model", "aria-label": "model" }, el("option", { value: "" }, "all models"));
  const surface = el("select", { id: "filter-surface", "aria-label": "surface" },
    ["", "openai", "ollama", "lmstudio", "anthropic"].map((s) => el("option", { value: s }, s || "all surfaces")));
  const status = el("select", { id: "filter-status", "aria-label": "status" },
    [["", "any status"], ["2", "2xx"], ["4", "4xx"], ["5", "5xx"]].map(([v, t]) => el("option", { value: v }, t)));
  const errorsOnly = el("input", { type: "checkbox", id: "filter-errors" });
  const exportButton = el("button", { id: "export", onclick: exportRows }, "Export JSON");
  const count = el("span", { class: "muted", id: "requests-count" });
  const table = el("table", { id: "requests", "aria-label": "finished requests" });
  const detail = el("div", { class: "card", id: "request-detail", hidden: true });
  const notice = el("div", { class: "error", id: "activity-error", role: "status" });
  main.append(
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "In flight")), inflight, inflightNote, notice),
    el("div", { class: "card" },
      el("div", { class: "card-head" }, el("h2", {}, "Requests"), count),
      el("div", { class: "toolbar" }, model, surface, status, el("label", { for: "filter-errors" }, errorsOnly, " errors only"), exportButton),
      el("div", { class: "scroll" }, table)),
    detail);

  function visible() {
    return rows.filter(({ record: r }) =>
      (!model.value || r.model === model.value) && (!surface.value || r.api === surface.value) &&
      (!status.value || String(r.status).startsWith(status.value)) && (!errorsOnly.checked || r.status >= 400 || r.error));
  }

  function show() {
    const models = [...new Set(rows.map((r) => r.record.model))].sort();
    const have = new Set([...model.options].map((o) => o.value));
    for (const m of models) if (!have.has(m)) model.append(el("option", { value: m }, m));
    const list = visible();
    count.textContent = `${list.length} of ${rows.length}`;
    table.replaceChildren(el("tr", {}, ["Time", "Surface", "Model", "Route", "Status", "TTFT", "Prompt", "Cached", "Completion", "Tokens/s", "Load", "Duration", ""]
      .map((h) => el("th", { scope: "col" }, h))),
      ...list.slice(0, 300).map((row, i) => {
        const r = row.record;
        const tps = tokensPerSecond(r);
        return el("tr", { class: `request${r.status >= 400 || r.error ? " failed" : ""}`, "data-index": i, "data-model": r.model,
                          tabindex: "0", onclick: () => open(row), onkeydown: (e) => { if (e.key === "Enter") open(row); } },
          el("td", {}, new Date(row.at * 1000).toLocaleTimeString()), el("td", {}, r.api), el("td", {}, r.model), el("td", {}, r.route),
          el("td", { class: `status ${r.status < 400 && !r.error ? "ok" : "bad"}` }, String(r.status)),
          el("td", { class: "ttft" }, ms(r.timeToFirstByteMs)),
          el("td", { class: "prompt" }, String(r.promptTokens)), el("td", { class: "cached" }, r.cachedTokens == null ? "–" : String(r.cachedTokens)),
          el("td", { class: "completion" }, String(r.completionTokens)), el("td", { class: "tps" }, tps == null ? "–" : tps.toFixed(1)),
          el("td", {}, r.loadMs ? ms(r.loadMs) : "–"), el("td", {}, ms(r.durationMs)),
          el("td", {}, r.clientDisconnected ? el("span", { class: "badge bad", title: "the client left before the end" }, "left") : ""));
      }));
  }

  function open(row) {
    selected = row;
    const r = row.record;
    const tps = tokensPerSecond(r);
    const fields = [["Time", new Date(row.at * 1000).toLocaleString()], ["Surface", r.api], ["Model", r.model], ["Route", r.route],
      ["Status", String(r.status)], ["Time to first token", ms(r.timeToFirstByteMs)], ["Duration", ms(r.durationMs)],
      ["Prompt tokens", String(r.promptTokens)], ["Cached prompt tokens", r.cachedTokens == null ? "–" : String(r.cachedTokens)],
      ["Completion tokens", String(r.completionTokens)], ["Tokens/s", tps == null ? "–" : tps.toFixed(2)],
      ["Load", r.loadMs ? ms(r.loadMs) : "none"], ["Gateway overhead", `${r.overheadMs.toFixed(2)} ms`],
      ["Client left early", r.clientDisconnected ? "yes" : "no"], ...(r.audioSeconds ? [["Audio", `${r.audioSeconds.toFixed(1)} s`]] : []),
      ["Error", r.error || "none"]];
    const bodies = el("div", { id: "capture" });
    detail.hidden = false;
    detail.replaceChildren(el("div", { class: "card-head" }, el("h2", {}, "Request"),
      el("button", { id: "detail-close", onclick: () => { detail.hidden = true; selected = null; } }, "Close")),
      el("dl", { class: "fields" }, fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])), bodies);
    if (!r.requestId) return;
    // The bodies, when the gateway captures them (dashboard.capture).
    siteConfig().then((site) => {
      if (!site.capture) throw new Error("request bodies are not captured: set dashboard.capture to true in app_config.json");
      return api(`/api/captures/${encodeURIComponent(r.requestId)}`);
    }).then((c) => {
      if (selected !== row) return;
      const pretty = (text) => { try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; } };
      const headers = Object.entries(c.requestHeaders).map(([k, v]) => `${k}: ${v}`).join("\n");
      bodies.replaceChildren(
        el("h2", {}, "Request body"), el("pre", { class: "body", id: "capture-request" }, pretty(c.requestBody) + (c.requestTruncated ? "\n… (cut at 64 KiB)" : "")),
        el("details", {}, el("summary", {}, "Request headers (credentials left out)"), el("pre", { class: "body", id: "capture-headers" }, headers)),
        el("h2", {}, `Answer${c.status ? ` (${c.status})` : ""}`), el("pre", { class: "body", id: "capture-response" }, pretty(c.responseBody) + (c.responseTruncated ? "\n… (cut at 64 KiB)" : "")));
    }).catch((e) => { if (selected === row) bodies.replaceChildren(el("div", { class: "muted", id: "capture-off" }, e.message)); });
  }

  function exportRows() {
    const blob = new Blob([JSON.stringify(visible(), null, 2)], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `llama-runner-requests-${Date.now()}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  async function refreshInflight() {
    let list;
    try { list = await api("/api/inflight"); } catch (e) { notice.textContent = `in-flight requests unavailable: ${e.message}`; return; }
    notice.textContent = "";
    const now = Date.now();
    inflight.replaceChildren(el("tr", {}, ["Running for", "Surface", "Model", "Route", "Phase", ""].map((h) => el("th", { scope: "col" }, h))),
      ...list.map((r) => el("tr", { "data-id": r.id, "data-model": r.model },
        el("td", {}, `${((now - r.startedAt) / 1000).toFixed(1)} s`), el("td", {}, r.port), el("td", {}, r.model), el("td", {}, r.path),
        el("td", { class: "phase" }, r.cancelled ? "cancelling" : r.phase === "waiting" ? "waiting for the model" : "answering"),
        el("td", {}, el("button", { class: "cancel", "aria-label": `cancel the request to ${r.model}`, disabled: r.cancelled, onclick: async (e) => {
          e.target.disabled = true;
          try { await api(`/api/inflight/${encodeURIComponent(r.id)}/cancel`, { method: "POST", body: "{}" }); }
          catch (err) { notice.textContent = err.message; }
          refreshInflight();
        } }, "Cancel")))));
    inflightNote.textContent = list.length ? "" : "nothing in flight";
  }

  for (const control of [model, surface, status, errorsOnly]) control.addEventListener("change", show);
  try { rows = await api(`/api/requests?limit=${KEEP}`); } catch (e) { notice.textContent = `requests unavailable: ${e.message}`; }
  show();
  await refreshInflight();
  timer = setInterval(refreshInflight, 1000);
  unsubscribe = onEvent(({ type, data }) => {
    if (type !== "request") return;
    rows.unshift(data);
    if (rows.length > KEEP) rows.length = KEEP;
    show();
    refreshInflight();
  });
}

export function leave() {
  if (unsubscribe) unsubscribe();
  if (timer) clearInterval(timer);
}
