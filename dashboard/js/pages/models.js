// Models: state, size, quantization, context, where each comes from; load and unload; a parameter
// editor that shows the validator's errors inline; discovery on demand; pulls from the Hugging Face Hub
// with live progress and cancel. State changes and pull progress arrive live.
import { api, el, bytes } from "../api.js";

let unsubscribe = null;
let revision = "";

export async function render(main, { onEvent }) {
  const table = el("table", { id: "models" });
  const editor = el("div", { class: "card", id: "editor", hidden: true });
  const discover = el("button", { id: "discover", onclick: async () => {
    discover.disabled = true;
    try { const r = await api("/api/discover", { method: "POST" }); notice.textContent = `discovery: ${r.added.length} added, ${r.missing.length} missing`; }
    catch (e) { notice.textContent = e.message; }
    discover.disabled = false;
    await refresh();
  } }, "Discover now");
  const notice = el("span", { class: "muted", id: "notice" });
  main.append(el("div", { class: "card" }, el("div", { class: "row" }, el("h2", {}, "Models"), discover, notice), table), editor, pullCard());

  async function refresh() {
    const data = await api("/api/models");
    revision = data.revision;
    table.replaceChildren(el("tr", {}, ["Model", "State", "Size", "Quantization", "Context", "Source", "Kind", ""].map((h) => el("th", {}, h))),
      ...data.models.map(({ model, runner, entry, loaded }) => {
        const state = runner ? runner.state : model.state === "available" ? "stopped" : model.state;
        return el("tr", { "data-model": model.id },
          el("td", {}, el("b", {}, model.id), model.aliases.length ? el("div", { class: "muted" }, model.aliases.join(", ")) : ""),
          el("td", { class: `state ${state === "ready" ? "ok" : state === "failed" || state === "missing" ? "bad" : ""}` }, state),
          el("td", {}, bytes(model.metadata && model.metadata.fileSize)),
          el("td", {}, (model.metadata && model.metadata.quantization) || "–"),
          el("td", {}, String((model.parameters && model.parameters.ctx_size) || (model.metadata && model.metadata.contextLength) || "–")),
          el("td", { class: "source", title: model.path || "" }, model.source || "–"),
          el("td", {}, model.kind),
          el("td", {},
            loaded ? el("button", { class: "unload", onclick: () => act(model.id, "unload") }, "Unload")
                   : el("button", { class: "load primary", onclick: () => act(model.id, "load") }, "Load"),
            " ", el("button", { class: "edit", onclick: () => edit(model.id, entry) }, "Edit")));
      }));
  }

  async function act(id, verb) {
    const row = table.querySelector(`tr[data-model="${CSS.escape(id)}"] .state`);
    if (row) row.textContent = verb === "load" ? "loading" : "stopping";
    try { await api(`/api/models/${encodeURIComponent(id)}/${verb}`, { method: "POST" }); }
    catch (e) { notice.textContent = e.message; }
    await refresh();
  }

  function edit(id, entry) {
    const text = el("textarea", { id: "param-editor" });
    text.value = JSON.stringify((entry && entry.parameters) || {}, null, 2);
    const errors = el("div", { class: "error", id: "param-error" });
    const save = el("button", { class: "primary", id: "param-save", onclick: async () => {
      errors.textContent = "";
      let parameters;
      try { parameters = JSON.parse(text.value); } catch (e) { errors.textContent = `not valid JSON: ${e.message}`; return; }
      try {
        await api(`/api/models/${encodeURIComponent(id)}`, { method: "PUT", body: JSON.stringify({ revision, parameters }) });
        errors.textContent = "";
        editor.hidden = true;
        notice.textContent = `${id}: saved`;
        await refresh();
      } catch (e) {
        errors.textContent = e.details && e.details.length ? e.details.join("\n") : e.message;
        if (e.status === 409) await refresh();
      }
    } }, "Save");
    editor.hidden = false;
    editor.replaceChildren(el("h2", {}, `Parameters of ${id}`), text, errors,
      el("div", { class: "row" }, save, el("button", { onclick: () => { editor.hidden = true; } }, "Cancel")));
  }

  await refresh();
  const pulls = await api("/api/models/pulls").catch(() => []);
  for (const p of pulls) showPull(p);
  unsubscribe = onEvent(({ type, data }) => {
    if (type === "runner" || type === "registry") refresh().catch(() => {});
    if (type === "pull") showPull(data);
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

export function leave() { if (unsubscribe) unsubscribe(); }
