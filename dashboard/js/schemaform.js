// Forms built from the JSON Schemas the registry enforces (`registry.schema`): objects as sections,
// booleans as checkboxes, enums as selects, numbers and strings as inputs, string lists one per line,
// unions as typed text, open maps as small JSON. Each field shows the document's value, or the effective
// default in its place, and is written only when it changed; the registry's errors are shown at their
// fields. Used by the Config page (app_config.json) and the Models page (one model's entry).
import { el } from "./api.js";

export const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
export const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

/**
 * A form for the object `schema` describing `value` (`effective`: the same with defaults filled in).
 * `idPrefix` names the controls' ids; `sections` folds each top-level object into a <details>;
 * `order` puts those keys first; `skip` leaves top-level keys out.
 */
export function schemaForm(schema, value, effective = {}, { idPrefix = "form", sections = false, order = [], skip = [] } = {}) {
  const form = { idPrefix, sections, controls: new Map() };
  const keys = Object.keys(schema.properties).filter((k) => !skip.includes(k))
    .sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  form.nodes = keys.map((k, i) => field(form, k, schema.properties[k], value ? value[k] : undefined, effective ? effective[k] : undefined, i === 0));
  form.collect = (base) => collect(form, base);
  form.clear = () => { for (const c of form.controls.values()) { c.message.textContent = ""; c.control.removeAttribute("aria-invalid"); } };
  /** Shows each "<file>: <prefix><path>: message" at its field; `prefix` is the form's place in the file. */
  form.showErrors = (details, prefix = "") => {
    for (const line of details) {
      const d = line.replace(/^[a-z_]+\.json: /, "");
      const at = d.indexOf(": ");
      if (at <= 0 || !d.startsWith(prefix)) continue;
      const path = d.slice(prefix.length, at);
      const target = [...form.controls.entries()].find(([p]) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`));
      if (target) { target[1].message.textContent = d.slice(at + 2); target[1].control.setAttribute("aria-invalid", "true"); }
    }
  };
  return form;
}

function field(form, path, node, value, fallback, open = false) {
  const name = path.split(".").pop();
  const id = `${form.idPrefix}-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
  const help = node.description ? el("div", { class: "help muted", id: `${id}-help` }, node.description) : "";
  const message = el("div", { class: "error field-error", id: `${id}-error` });
  const describe = [node.description ? `${id}-help` : "", `${id}-error`].filter(Boolean).join(" ");
  if (node.type === "object" && node.properties) {
    const children = Object.entries(node.properties).map(([k, n]) =>
      field(form, `${path}.${k}`, n, value ? value[k] : undefined, fallback ? fallback[k] : undefined));
    if (form.sections && !path.includes(".")) {
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
  form.controls.set(path, { get, message, control });
  return el("div", { class: "config-field", "data-path": path }, el("label", { for: id }, name), control, help, message);
}


// The document the form describes: `base` with each field's value set (or removed).
function collect(form, base) {
  const doc = clone(base) || {};
  for (const [path, c] of form.controls) {
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

