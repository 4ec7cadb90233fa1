// Models: every model with its state, source, file, size, quantization, context, memory (estimate while it
// loads, measured once ready, per device), placement, queue, leases and TTL countdown; pinned, preload and
// resident toggles; load, unload, delete where allowed; a parameter, alias and TTL editor that shows the
// validator's errors inline; a search box and sorting; discovery on demand; pulls from the Hugging Face
// Hub with live progress and cancel. State changes and pull progress arrive live.
import { api, el, bytes } from "../api.js";
import { schemaForm, same } from "../schemaform.js";

let unsubscribe = null;
let ticker = null;
let revision = "";
let entrySchema = null;

const SORTS = {
  name: (a, b) => a.model.id.localeCompare(b.model.id),
  state: (a, b) => rank(a) - rank(b) || a.model.id.localeCompare(b.model.id),
  size: (a, b) => ((b.model.metadata && b.model.metadata.fileSize) || 0) - ((a.model.metadata && a.model.metadata.fileSize) || 0),
  memory: (a, b) => held(b) - held(a),
};
const rank = (m) => ({ ready: 0, loading: 1, starting: 1, stopping: 2, failed: 3 })[stateOf(m)] ?? 4;
const held = (m) => Object.values((m.runner && m.runner.memoryByDevice) || {}).reduce((x, y) => x + y, 0);
const stateOf = ({ model, runner }) => (runner && runner.state !== "stopped" ? runner.state : model.state === "available" ? "stopped" : model.state);

function countdown(seconds) {
  if (seconds == null) return "–";
  const s = Math.max(0, Math.round(seconds));
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

export async function render(main, { onEvent }) {
  const table = el("table", { id: "models", "aria-label": "models" });
  const editor = el("div", { class: "card", id: "editor", hidden: true });
  const notice = el("span", { class: "muted", id: "notice", role: "status" });
  const search = el("input", { id: "model-search", type: "search", placeholder: "search models", "aria-label": "search models" });
  const sort = el("select", { id: "model-sort", "aria-label": "sort by" },
    [["name", "sort by name"], ["state", "sort by state"], ["size", "sort by size"], ["memory", "sort by memory held"]].map(([v, t]) => el("option", { value: v }, t)));
  const discover = el("button", { id: "discover", onclick: async () => {
    discover.disabled = true;
    try { const r = await api("/api/discover", { method: "POST", body: "{}" }); notice.textContent = `discovery: ${r.added.length} added, ${r.missing.length} missing`; }
    catch (e) { notice.textContent = e.message; }
    discover.disabled = false;
    await refresh();
  } }, "Discover now");
  main.append(el("div", { class: "card" },
    el("div", { class: "card-head" }, el("h2", {}, "Models"), el("div", { class: "toolbar" }, search, sort, discover)), notice,
    el("div", { class: "scroll" }, table)), editor, pullCard());

  let data = { models: [] };
  let resident = null;
  let fetchedAt = 0;

  async function refresh() {
    data = await api("/api/models");
    revision = data.revision;
    resident = data.residentModel || null;
    fetchedAt = performance.now();
    show();
  }

  function show() {
    const q = search.value.trim().toLowerCase();
    const list = data.models.filter(({ model }) => !q || [model.id, ...model.aliases, model.path || "", model.source || ""].some((t) => t.toLowerCase().includes(q)))
      .sort(SORTS[sort.value] || SORTS.name);
    table.replaceChildren(el("tr", {}, ["Model", "State", "Size", "Context", "Memory", "Placement", "Queue", "TTL", "Flags", ""].map((h) => el("th", { scope: "col" }, h))),
      ...list.map((m) => row(m)));
  }

  // A peer's model: served by another server (app_config.json peers), shown with that server's state.
  function peerRow(m) {
    const { model, peerState } = m;
    return el("tr", { "data-model": model.id, class: "peer-model" },
      el("td", {}, el("b", {}, model.id), el("div", { class: "muted" }, el("span", { class: "source" }, `peer ${model.peer.peer}`), " · ",
        el("span", { class: "file" }, model.peer.model))),
      el("td", {}, el("span", { class: `state ${peerState === "up" ? "ok" : peerState === "down" ? "bad" : ""}` }, `peer ${peerState}`)),
      ...["–", "–", "–", "peer", "–", "–", ""].map((t) => el("td", { class: "muted" }, t)),
      el("td", { class: "actions muted" }, "served by the peer"));
  }

  function row(m) {
    if (m.model.peer) return peerRow(m);
    const { model, runner, entry, loaded } = m;
    const state = stateOf(m);
    const meta = model.metadata || {};
    const memory = runner && runner.memoryByDevice && Object.keys(runner.memoryByDevice).length
      ? Object.entries(runner.memoryByDevice).map(([d, n]) => el("div", { class: "device", "data-device": d }, `${d === "cpu" ? "RAM" : d.slice(0, 12)}: ${bytes(n)}`))
      : m.estimate ? Object.entries(m.estimate).map(([d, n]) => el("div", { class: "device estimate", "data-device": d, title: "estimate before a load" },
          `${d === "cpu" ? "RAM" : d.slice(0, 12)}: ~${bytes(n)}`))
      : [el("span", { class: "muted" }, "–")];
    const measured = runner && runner.measuredMemory;
    const where = runner && runner.devices ? (runner.devices.length ? runner.devices.join(", ") : "CPU") : model.devices && model.devices.length ? `wants ${model.devices.join(", ")}` : "–";
    const placement = runner && runner.host ? `${runner.host}: ${where}` : where;
    const ttl = runner && runner.expiresInSeconds != null ? runner.expiresInSeconds - (performance.now() - fetchedAt) / 1000 : null;
    const flag = (name, on, title) => el("label", { class: "flag", title },
      el("input", { type: "checkbox", class: `toggle-${name}`, checked: on, "aria-label": `${name} ${model.id}`,
                    onchange: (e) => toggle(model.id, name, e.target.checked, e.target) }), ` ${name}`);
    // An entry of the user's own (a discovered file's entry would come back at the next scan; another
    // tool's cache has none): the registry deletes files only when it downloaded or received them.
    const deletable = !!entry && !model.autoDiscovered;
    return el("tr", { "data-model": model.id },
      el("td", {}, el("b", {}, model.id), model.aliases.length ? el("div", { class: "muted" }, model.aliases.join(", ")) : "",
        el("div", { class: "muted", title: model.path || "" }, el("span", { class: "source" }, model.source || "–"), " · ",
          el("span", { class: "file" }, (model.path || "").split("/").pop()),
          model.mmproj ? el("div", { class: "file mmproj", title: model.mmproj }, `+ ${model.mmproj.split("/").pop()}`) : "")),
      el("td", {}, el("span", { class: `state ${state === "ready" ? "ok" : state === "failed" || state === "missing" ? "bad" : ""}` }, state),
        runner && runner.detail && state !== "ready" ? el("div", { class: "muted detail", title: runner.detail }, runner.detail.slice(0, 90)) : ""),
      el("td", {}, bytes(meta.fileSize), el("div", { class: "muted" }, meta.quantization || "")),
      el("td", {}, String((runner && runner.contextLength) || (model.parameters && model.parameters.ctx_size) || meta.contextLength || "–")),
      el("td", { class: "memory", title: measured ? "measured: what llama-server reported allocating" : runner ? "estimate" : "" }, ...memory,
        el("div", { class: "muted" }, measured ? "measured" : "estimate")),
      el("td", { class: "placement" }, placement),
      el("td", { class: "queue" }, runner ? `${runner.activeLeases} active · ${runner.queued} queued` : "–"),
      el("td", { class: "ttl", "data-expires": ttl == null ? "" : String(ttl) }, model.pinned ? "pinned" : countdown(ttl)),
      el("td", { class: "flags" }, flag("pinned", model.pinned, "never unloaded or evicted"), flag("preload", model.preload, "loaded at start"),
        flag("resident", resident === model.id, "kept loaded; comes back when the machine is idle")),
      el("td", { class: "actions" },
        loaded ? el("button", { class: "unload", onclick: () => act(model.id, "unload") }, "Unload")
               : el("button", { class: "load primary", onclick: () => act(model.id, "load") }, "Load"),
        " ", el("button", { class: "edit", onclick: () => edit(model.id, entry, model) }, "Edit"),
        deletable ? [" ", el("button", { class: "delete", onclick: () => remove(model.id) }, "Delete")] : ""));
  }

  async function toggle(id, name, on, box) {
    box.disabled = true;
    try {
      if (name === "resident") {
        const c = await api("/api/config");
        await api("/api/config", { method: "PUT", body: JSON.stringify({ revision: c.revision, app: { ...c.app, resident_model: on ? id : null } }) });
      } else {
        await api(`/api/models/${encodeURIComponent(id)}`, { method: "PUT", body: JSON.stringify({ revision, [name]: on ? true : null }) });
      }
      notice.textContent = `${id}: ${name} ${on ? "on" : "off"}`;
    } catch (e) {
      notice.textContent = e.details && e.details.length ? e.details.join("; ") : e.message;
    }
    await refresh();
  }

  async function remove(id) {
    if (!confirm(`Delete ${id}? Its entry goes, and its file too when Llama Runner downloaded it.`)) return;
    try { await api(`/api/models/${encodeURIComponent(id)}?revision=${encodeURIComponent(revision)}`, { method: "DELETE", body: "{}" }); notice.textContent = `${id}: deleted`; }
    catch (e) { notice.textContent = e.message; }
    await refresh();
  }

  async function act(id, verb) {
    const cellNode = table.querySelector(`tr[data-model="${CSS.escape(id)}"] .state`);
    if (cellNode) cellNode.textContent = verb === "load" ? "loading" : "stopping";
    try { await api(`/api/models/${encodeURIComponent(id)}/${verb}`, { method: "POST", body: "{}" }); }
    catch (e) { notice.textContent = e.message; }
    await refresh();
  }

  // The entry's own settings as a form from the registry's schema; its llama-server parameters as JSON
  // (any option llama-server takes). A save sends only what changed, merged onto the entry.
  async function edit(id, entry, model) {
    const text = el("textarea", { id: "param-editor", "aria-label": `parameters of ${id}` });
    text.value = JSON.stringify((entry && entry.parameters) || {}, null, 2);
    const errors = el("div", { class: "error", id: "param-error", role: "alert" });
    if (!entrySchema) {
      try { entrySchema = (await api("/api/config/schema/models")).properties.models.additionalProperties; }
      catch (e) { notice.textContent = `the models schema is unavailable: ${e.message}`; return; }
    }
    const form = schemaForm(entrySchema, entry || {}, {}, { idPrefix: "entry", skip: ["parameters", "source", "auto_discovered", "model_path"] });
    let checkTimer = null;
    // Inline validation while typing: the JSON itself here; the registry's own rules on save.
    text.addEventListener("input", () => {
      clearTimeout(checkTimer);
      checkTimer = setTimeout(() => {
        // Clears only its own message: the registry's answer to a save stays until the next save.
        try { JSON.parse(text.value); if (errors.textContent.startsWith("not valid JSON")) errors.textContent = ""; text.removeAttribute("aria-invalid"); }
        catch (e) { errors.textContent = `not valid JSON: ${e.message}`; text.setAttribute("aria-invalid", "true"); }
      }, 250);
    });
    const save = el("button", { class: "primary", id: "param-save", onclick: async () => {
      errors.textContent = "";
      form.clear();
      let parameters;
      try { parameters = JSON.parse(text.value); } catch (e) { errors.textContent = `not valid JSON: ${e.message}`; return; }
      let next;
      try { next = form.collect(entry || {}); } catch (e) { errors.textContent = e.message; return; }
      next.parameters = parameters;
      const before = entry || {};
      const body = { revision };
      for (const k of new Set([...Object.keys(before), ...Object.keys(next)])) {
        if (!same(before[k], next[k])) body[k] = next[k] === undefined ? null : next[k];
      }
      try {
        await api(`/api/models/${encodeURIComponent(id)}`, { method: "PUT", body: JSON.stringify(body) });
        errors.textContent = "";
        editor.hidden = true;
        notice.textContent = `${id}: saved`;
        await refresh();
      } catch (e) {
        const details = e.details && e.details.length ? e.details : [e.message];
        errors.textContent = details.join("\n");
        form.showErrors(details, `models.${id}.`);
        if (e.status === 409) await refresh();
      }
    } }, "Save");
    editor.hidden = false;
    editor.replaceChildren(el("h2", {}, `Edit ${id}`),
      el("div", { class: "muted" }, `file: ${model.path || "–"}`),
      el("label", { for: "param-editor" }, "Parameters (llama-server options, JSON)"), text,
      el("details", { class: "section", open: true }, el("summary", {}, "Entry settings"), ...form.nodes),
      errors, el("div", { class: "row" }, save, el("button", { onclick: () => { editor.hidden = true; } }, "Cancel")));
    text.focus();
  }

  search.addEventListener("input", show);
  sort.addEventListener("change", show);
  await refresh();
  const pulls = await api("/api/models/pulls").catch(() => []);
  for (const p of pulls) showPull(p);
  // The TTL countdowns tick between refreshes.
  ticker = setInterval(() => {
    for (const td of table.querySelectorAll("td.ttl[data-expires]")) {
      if (!td.dataset.expires) continue;
      const left = Number(td.dataset.expires) - 1;
      td.dataset.expires = String(left);
      td.textContent = countdown(left);
    }
  }, 1000);
  unsubscribe = onEvent(({ type, data: d }) => {
    if (type === "runner" || type === "registry") refresh().catch(() => {});
    if (type === "pull") showPull(d);
  });
}

// Pulls: a name as Ollama users type it (hf.co/user/repo:Q4_K_M, user/repo, user/repo/file.gguf), an
// optional quantization; one line per pull with its bar, speed and a cancel button while it runs.
const pullRows = new Map();
let pullList = null;

function pullCard() {
  const name = el("input", { id: "pull-name", placeholder: "hf.co/user/repo[:quant] or user/repo/file.gguf", autocomplete: "off" });
  const quant = el("input", { id: "pull-quant", placeholder: "quantization (optional)", autocomplete: "off" });
  const error = el("div", { class: "error", id: "pull-error" });
  const start = el("button", { class: "primary", id: "pull-start", onclick: async () => {
    error.textContent = "";
    if (!name.value.trim()) { error.textContent = "a model name is needed"; return; }
    start.disabled = true;
    try {
      const status = await api("/api/models/pull", { method: "POST", body: JSON.stringify({ name: name.value.trim(), ...(quant.value.trim() ? { quantization: quant.value.trim() } : {}) }) });
      showPull(status);
      name.value = ""; quant.value = "";
    } catch (e) { error.textContent = e.message; }
    start.disabled = false;
  } }, "Pull");
  pullList = el("div", { id: "pulls" });
  pullRows.clear();
  return el("div", { class: "card" }, el("h2", {}, "Pull from the Hugging Face Hub"),
    el("div", { class: "row" }, name, quant, start), error, pullList);
}

function showPull(p) {
  if (!pullList || !p || !p.job) return;
  let row = pullRows.get(p.job);
  if (!row) {
    row = { line: el("div", { class: "pull", "data-job": p.job }) };
    pullRows.set(p.job, row);
    pullList.prepend(row.line);
  }
  const total = (p.files || []).reduce((n, f) => n + f.total, 0);
  const done = (p.files || []).reduce((n, f) => n + f.completed, 0);
  const percent = total ? Math.floor((done * 100) / total) : 0;
  const finished = p.phase === "done" || p.phase === "failed" || p.phase === "cancelled";
  // A status can arrive after a newer one (an HTTP answer behind the event stream): never go back.
  if (row.finished || (!finished && done < (row.done || 0))) return;
  row.finished = finished;
  row.done = done;
  const speed = p.bytesPerSecond ? ` · ${bytes(p.bytesPerSecond)}/s` : "";
  const what = p.phase === "done" ? (p.alreadyDownloaded ? "already downloaded" : "done") : p.phase === "failed" ? `failed: ${p.error || p.failure}` : p.phase;
  const cancel = finished ? "" : el("button", { class: "pull-cancel", onclick: async (e) => {
    e.target.disabled = true;
    try { showPull(await api(`/api/models/pulls/${encodeURIComponent(p.job)}`, { method: "DELETE" })); } catch (err) { e.target.disabled = false; }
  } }, "Cancel");
  row.line.dataset.phase = p.phase;
  row.line.replaceChildren(
    el("div", { class: "row" }, el("span", {}, el("b", {}, p.model || p.name), " ",
      el("span", { class: `phase ${p.phase === "done" ? "ok" : p.phase === "failed" ? "bad" : "muted"}` }, what),
      el("span", { class: "muted" }, total ? ` ${bytes(done)} of ${bytes(total)}${finished ? "" : speed}` : "")), cancel),
    el("div", { class: "bar" }, el("span", { style: `width: ${p.phase === "done" ? 100 : percent}%` })));
}

export function leave() {
  if (unsubscribe) unsubscribe();
  if (ticker) clearInterval(ticker);
}
