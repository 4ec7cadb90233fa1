// Config: the app settings editor (validated by the registry; errors inline) and backups with restore.
import { api, el } from "../api.js";

export async function render(main) {
  const editor = el("textarea", { id: "config-editor", style: "min-height:360px" });
  const errors = el("div", { class: "error", id: "config-error" });
  const notice = el("span", { class: "muted", id: "config-notice" });
  const backups = el("table", { id: "backups" });
  const token = el("input", { id: "admin-token", placeholder: "admin token (only if one is configured)", type: "password",
                              value: localStorage.getItem("adminToken") || "", onchange: () => localStorage.setItem("adminToken", token.value) });
  let revision = "";
  async function load() {
    const c = await api("/api/config");
    revision = c.revision;
    editor.value = JSON.stringify(c.app, null, 2);
    const invalid = c.files.filter((f) => f.errors.length);
    errors.textContent = invalid.map((f) => `${f.name} on disk is invalid (the last good version is in force):\n${f.errors.join("\n")}`).join("\n");
    const list = await api("/api/config/backups");
    backups.replaceChildren(el("tr", {}, ["Backup", "File", "Taken", ""].map((h) => el("th", {}, h))), ...list.slice(0, 20).map((b) =>
      el("tr", {}, el("td", {}, b.name), el("td", {}, b.file), el("td", {}, new Date(b.createdAt).toLocaleString()),
         el("td", {}, el("button", { class: "restore", onclick: async () => {
           try { await api(`/api/config/backups/${encodeURIComponent(b.name)}/restore`, { method: "POST" }); notice.textContent = `restored ${b.name}`; await load(); }
           catch (e) { errors.textContent = e.message; }
         } }, "Restore")))));
  }
  const save = el("button", { class: "primary", id: "config-save", onclick: async () => {
    errors.textContent = "";
    let app;
    try { app = JSON.parse(editor.value); } catch (e) { errors.textContent = `not valid JSON: ${e.message}`; return; }
    try { await api("/api/config", { method: "PUT", body: JSON.stringify({ revision, app }) }); notice.textContent = "saved (ports and limits apply when the services restart)"; await load(); }
    catch (e) { errors.textContent = e.details && e.details.length ? e.details.join("\n") : e.message; }
  } }, "Save");
  main.append(el("div", { class: "card" }, el("h2", {}, "app_config.json"), editor, errors, el("div", { class: "row" }, save, notice, token)),
              el("div", { class: "card", style: "margin-top:14px" }, el("h2", {}, "Backups"), backups));
  await load();
}
