// Models: state, size, quantization, context; load and unload; a parameter editor that shows the
// validator's errors inline; discovery on demand. State changes arrive live.
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
  main.append(el("div", { class: "card" }, el("div", { class: "row" }, el("h2", {}, "Models"), discover, notice), table), editor);

  async function refresh() {
    const data = await api("/api/models");
    revision = data.revision;
    table.replaceChildren(el("tr", {}, ["Model", "State", "Size", "Quantization", "Context", "Kind", ""].map((h) => el("th", {}, h))),
      ...data.models.map(({ model, runner, entry, loaded }) => {
        const state = runner ? runner.state : model.state === "available" ? "stopped" : model.state;
        return el("tr", { "data-model": model.id },
          el("td", {}, el("b", {}, model.id), model.aliases.length ? el("div", { class: "muted" }, model.aliases.join(", ")) : ""),
          el("td", { class: `state ${state === "ready" ? "ok" : state === "failed" || state === "missing" ? "bad" : ""}` }, state),
          el("td", {}, bytes(model.metadata && model.metadata.fileSize)),
          el("td", {}, (model.metadata && model.metadata.quantization) || "–"),
          el("td", {}, String((model.parameters && model.parameters.ctx_size) || (model.metadata && model.metadata.contextLength) || "–")),
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
  unsubscribe = onEvent(({ type }) => { if (type === "runner" || type === "registry") refresh().catch(() => {}); });
}

export function leave() { if (unsubscribe) unsubscribe(); }
