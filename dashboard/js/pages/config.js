// Config: app_config.json as a form built from the JSON Schema the registry enforces (types, enums,
// descriptions as help), the registry's own errors shown at their fields, a diff before saving, the raw
// JSON as another view, backups with a diff against the current file before a restore, and a restart
// button when a saved change needs one (through the launcher, with the admin token when one is set).
import { api, el } from "../api.js";

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

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
  const controls = new Map();  // path → {get(), set(message)}

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
  function buildForm() {
    controls.clear();
    const keys = Object.keys(schema.properties).sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
    form.replaceChildren(...keys.map((k, i) => field(k, schema.properties[k], current[k], effective[k], i === 0)));
  }

  // One field per schema node: objects as sections, booleans as checkboxes, enums as selects, numbers
  // and strings as inputs, string lists one per line, maps and unions as small JSON or text inputs.
  // A field shows the file's value, or the effective default in its place; it writes only when changed.
  function field(path, node, value, fallback, open = false) {
    const name = path.split(".").pop();
    const id = `cfg-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
    const help = node.description ? el("div", { class: "help muted", id: `${id}-help` }, node.description) : "";
    const message = el("div", { class: "error field-error", id: `${id}-error` });
    const describe = [node.description ? `${id}-help` : "", `${id}-error`].filter(Boolean).join(" ");
    if (node.type === "object" && node.properties) {
      const children = Object.entries(node.properties).map(([k, n]) =>
        field(`${path}.${k}`, n, value ? value[k] : undefined, fallback ? fallback[k] : undefined));
      if (!path.includes(".")) {
        return el("details", { class: "section", "data-path": path, open }, el("summary", {}, name, node.description ? el("span", { class: "muted" }, ` — ${node.description}`) : ""), ...children);
      }
      return el("fieldset", { "data-path": path }, el("legend", {}, name), help, ...children);
    }
    const shown = value !== undefined ? value : fallback;
    let control, read;
    if (node.type === "boolean") {
      control = el("input", { type: "checkbox", id, checked: shown === true, "aria-describedby": describe });
      read = () => control.checked;
    } else if (node.enum) {
      control = el("select", { id, "aria-describedby": describe }, el("option", { value: "" }, "(default)"),
        node.enum.map((v) => el("option", { value: String(v), selected: v === shown }, String(v))));
      read = () => (control.value === "" ? undefined : control.value);
    } else if (node.type === "integer" || node.type === "number") {
      control = el("input", { type: "number", id, value: shown == null ? "" : String(shown), step: node.type === "integer" ? "1" : "any",
                              ...(node.minimum != null ? { min: String(node.minimum) } : {}), ...(node.maximum != null ? { max: String(node.maximum) } : {}),
                              "aria-describedby": describe });
      read = () => (control.value === "" ? undefined : Number(control.value));
    } else if (node.type === "string") {
      control = el("input", { id, value: shown == null ? "" : shown, "aria-describedby": describe });
      read = () => (control.value === "" ? undefined : control.value);
    } else if (node.type === "array" && node.items && node.items.type === "string") {
      control = el("textarea", { id, style: "min-height:48px", "aria-describedby": describe, placeholder: "one per line" });
      control.value = (shown || []).join("\n");
      read = () => control.value.split("\n").map((t) => t.trim()).filter(Boolean);
    } else if (node.anyOf) {
      // A union (bytes or a share, a path or false, a name or null): typed when it reads as a number or a boolean.
      const kinds = node.anyOf.map((o) => o.type);
      control = el("input", { id, value: shown == null ? "" : typeof shown === "string" ? shown : JSON.stringify(shown), "aria-describedby": describe,
                              placeholder: kinds.join(" or ") });
      read = () => {
        const t = control.value.trim();
        if (t === "") return kinds.includes("null") ? null : undefined;
        if ((kinds.includes("integer") || kinds.includes("number")) && /^-?\d+(\.\d+)?$/.test(t)) return Number(t);
        if (kinds.includes("boolean") && (t === "true" || t === "false")) return t === "true";
        return t;
      };
    } else {
      control = el("textarea", { id, style: "min-height:48px", "aria-describedby": describe, "data-json": "true" });
      control.value = shown === undefined ? "" : JSON.stringify(shown, null, 1);
      read = () => { const t = control.value.trim(); if (!t) return undefined; try { return JSON.parse(t); } catch { throw new Error(`${path}: not valid JSON`); } };
    }
    const initial = read();
    // Unchanged, the file keeps what it had (a default stays unwritten); changed, the new value.
    const get = () => { const now = read(); return same(now, initial) ? value : now; };
    control.dataset.path = path;
    controls.set(path, { get, message, control });
    return el("div", { class: "config-field", "data-path": path }, el("label", { for: id }, name), control, help, message);
  }

  // The document the form describes: the current file with each field's value set (or removed).
  function fromForm() {
    const doc = clone(current);
    for (const [path, c] of controls) {
      const v = c.get();
      const keys = path.split(".");
      const last = keys.pop();
      let o = doc;
      // Sections are made only for a value to go in: removing from one that is not there changes nothing.
      for (const k of keys) {
        if (o[k] == null || typeof o[k] !== "object") { if (v === undefined) { o = null; break; } o[k] = {}; }
        o = o[k];
      }
      if (!o) continue;
      if (v === undefined) delete o[last]; else o[last] = v;
    }
    return doc;
  }

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
    for (const c of controls.values()) { c.message.textContent = ""; c.control.removeAttribute("aria-invalid"); }
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
      for (const line of details) {
        const d = line.replace(/^[a-z_]+\.json: /, "");
        const at = d.indexOf(": ");
        const path = at > 0 ? d.slice(0, at) : "";
        const target = [...controls.entries()].find(([p]) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`));
        if (target) { target[1].message.textContent = d.slice(at + 2); target[1].control.setAttribute("aria-invalid", "true"); }
      }
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
