// Config: app_config.json as a form built from the JSON Schema the registry enforces (types, enums,
// descriptions as help), the registry's own errors shown at their fields, a diff before saving, the raw
// JSON as another view, backups with a diff against the current file before a restore, and a restart
// button when a saved change needs one (through the launcher, with the admin token when one is set).
import { api, el } from "../api.js";
import { schemaForm, same } from "../schemaform.js";


/** Every leaf that differs between two documents, as [path, before, after]. */
export function diff(before, after, path = "") {
  const isObject = (v) => v && typeof v === "object" && !Array.isArray(v);
  // A section on one side only is compared key by key with an empty one: each setting is its own row.
  if (isObject(before) && after === undefined) after = {};
  if (isObject(after) && before === undefined) before = {};
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diff(before[k], after[k], path ? `${path}.${k}` : k));
  }
  return same(before, after) ? [] : [[path, before, after]];
}

const show = (v) => (v === undefined ? "(not set)" : JSON.stringify(v));

export async function render(main) {
  const form = el("form", { id: "config-form", onsubmit: (e) => e.preventDefault() });
  const editor = el("textarea", { id: "config-editor", style: "min-height:360px", hidden: true, "aria-label": "app_config.json" });
  const errors = el("div", { class: "error", id: "config-error", role: "alert" });
  const notice = el("span", { class: "muted", id: "config-notice", role: "status" });
  const review = el("div", { class: "card", id: "config-review", hidden: true });
  const restartBox = el("div", { class: "card", id: "config-restart", hidden: true });
  const backups = el("table", { id: "backups", "aria-label": "backups" });
  const backupDiff = el("div", { id: "backup-diff", hidden: true });
  const rawToggle = el("button", { id: "config-raw", type: "button", onclick: () => setRaw(!raw) }, "Raw JSON");
  const token = el("input", { id: "admin-token", placeholder: "admin token (only if one is configured)", type: "password", "aria-label": "admin token",
                              value: localStorage.getItem("adminToken") || "", onchange: () => localStorage.setItem("adminToken", token.value) });
  const save = el("button", { class: "primary", id: "config-save", type: "button", onclick: prepare }, "Review and save");
  main.append(
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "app_config.json"), el("div", { class: "toolbar" }, rawToggle)),
      form, editor, errors, el("div", { class: "toolbar" }, save, notice, token)),
    review, restartBox,
    el("div", { class: "card" }, el("h2", {}, "Backups"), backups, backupDiff));

  let schema = null, current = null, effective = {}, revision = "", raw = false;

  async function load() {
    const c = await api("/api/config");
    revision = c.revision;
    current = c.app;
    effective = c.effective || {};
    editor.value = JSON.stringify(c.app, null, 2);
    buildForm();
    const invalid = c.files.filter((f) => f.errors.length);
    errors.textContent = invalid.map((f) => `${f.name} on disk is invalid (the last good version is in force):\n${f.errors.join("\n")}`).join("\n");
    showRestart(c.restart || []);
    const list = await api("/api/config/backups");
    backups.replaceChildren(el("tr", {}, ["Backup", "File", "Taken", ""].map((h) => el("th", { scope: "col" }, h))), ...list.slice(0, 20).map((b) =>
      el("tr", { "data-backup": b.name }, el("td", {}, b.name), el("td", {}, b.file), el("td", {}, new Date(b.createdAt).toLocaleString()),
         el("td", {}, el("button", { class: "restore", type: "button", onclick: () => compareBackup(b) }, "Compare and restore")))));
  }

  const ORDER = ["proxies", "dashboard", "limits", "paths", "hardware", "hub", "resident_model", "allowed_hosts", "http", "runtimes", "log_levels", "discovery_interval_seconds"];
  let built = null;
  function buildForm() {
    built = schemaForm(schema, current, effective, { idPrefix: "cfg", sections: true, order: ORDER });
    form.replaceChildren(...built.nodes);
  }
  const fromForm = () => built.collect(current);

  function setRaw(on) {
    if (on) editor.value = JSON.stringify(safely(fromForm) || current, null, 2);
    else {
      try { current = { ...JSON.parse(editor.value) }; buildForm(); } catch (e) { errors.textContent = `not valid JSON: ${e.message}`; return; }
    }
    raw = on;
    editor.hidden = !on;
    form.hidden = on;
    rawToggle.textContent = on ? "Form" : "Raw JSON";
  }

  function safely(f) { try { return f(); } catch (e) { errors.textContent = e.message; return null; } }

  function clearMessages() {
    errors.textContent = "";
    if (built) built.clear();
  }

  // Before saving: what changes, field by field.
  async function prepare() {
    clearMessages();
    let next;
    if (raw) { try { next = JSON.parse(editor.value); } catch (e) { errors.textContent = `not valid JSON: ${e.message}`; return; } }
    else { next = safely(fromForm); if (!next) return; }
    const original = (await api("/api/config")).app;
    const changes = diff(original, next);
    review.hidden = false;
    if (!changes.length) { review.replaceChildren(el("h2", {}, "Review"), el("div", { class: "muted" }, "nothing changed")); return; }
    const confirm = el("button", { class: "primary", id: "config-confirm", type: "button", onclick: () => commit(next) }, `Save ${changes.length} change${changes.length > 1 ? "s" : ""}`);
    review.replaceChildren(el("h2", {}, "Review"),
      el("table", { id: "config-diff" }, el("tr", {}, ["Setting", "Now", "After"].map((h) => el("th", { scope: "col" }, h))),
        changes.map(([p, a, b]) => el("tr", { "data-path": p }, el("td", {}, p), el("td", { class: "before" }, show(a)), el("td", { class: "after" }, show(b))))),
      el("div", { class: "toolbar" }, confirm, el("button", { type: "button", onclick: () => { review.hidden = true; } }, "Cancel")));
    confirm.focus();
  }

  async function commit(next) {
    try {
      await api("/api/config", { method: "PUT", body: JSON.stringify({ revision, app: next }) });
      review.hidden = true;
      notice.textContent = "saved";
      await load();
    } catch (e) {
      review.hidden = true;
      const details = e.details && e.details.length ? e.details : [e.message];
      errors.textContent = details.join("\n");
        // The registry names the file and the setting first ("app_config.json: limits.max_loaded_models: …"): shown there too.
      built.showErrors(details);
      if (e.status === 409) await load();
    }
  }

  function showRestart(list) {
    restartBox.hidden = !list.length;
    restartBox.replaceChildren(el("h2", {}, "Restart needed"), ...list.map((r) =>
      el("div", { class: "toolbar" }, el("span", {}, `${r.keys.join(", ")} changed: the ${r.service} reads them only when it starts.`),
        el("button", { class: "primary restart", "data-service": r.service, type: "button", onclick: (e) => restart(r.service, e.target) }, `Restart ${r.service}`))));
  }

  async function restart(service, button) {
    button.disabled = true;
    try {
      await api(`/api/services/${encodeURIComponent(service)}/restart`, { method: "POST", body: "{}" });
      notice.textContent = `restarting ${service}…`;
      // The gateway serves this page's API: wait for it to answer again, then read the config anew.
      const until = Date.now() + 30000;
      await new Promise((r) => setTimeout(r, 800));
      while (Date.now() < until) {
        try { await load(); notice.textContent = `${service} restarted`; return; } catch { await new Promise((r) => setTimeout(r, 300)); }
      }
      notice.textContent = `${service} did not come back within 30 s`;
    } catch (e) {
      notice.textContent = e.message;
      button.disabled = false;
    }
  }

  async function compareBackup(b) {
    backupDiff.hidden = false;
    let content;
    try { content = await api(`/api/config/backups/${encodeURIComponent(b.name)}`); }
    catch (e) { backupDiff.replaceChildren(el("div", { class: "error" }, e.message)); return; }
    const docs = await api("/api/config/documents");
    const now = b.file.startsWith("models") ? docs.models : docs.app;
    const changes = diff(now, content.document);
    backupDiff.replaceChildren(el("h2", {}, `${b.name} against the current ${b.file}`),
      changes.length ? el("table", { id: "backup-changes" }, el("tr", {}, ["Setting", "Now", "In the backup"].map((h) => el("th", { scope: "col" }, h))),
        changes.map(([p, a, c]) => el("tr", {}, el("td", {}, p), el("td", {}, show(a)), el("td", {}, show(c))))) : el("div", { class: "muted" }, "the same as now"),
      el("div", { class: "toolbar" }, el("button", { class: "primary", id: "backup-restore", type: "button", onclick: async () => {
        try { await api(`/api/config/backups/${encodeURIComponent(b.name)}/restore`, { method: "POST", body: "{}" }); notice.textContent = `restored ${b.name}`; backupDiff.hidden = true; await load(); }
        catch (e) { errors.textContent = e.message; }
      } }, `Restore ${b.name}`), el("button", { type: "button", onclick: () => { backupDiff.hidden = true; } }, "Cancel")));
  }

  schema = await api("/api/config/schema/app");
  await load();
}
