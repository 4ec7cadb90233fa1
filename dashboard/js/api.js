// Talking to the dashboard API (port 8585) and the OpenAI API, on the host the page came from.
let config = null;

export async function siteConfig() {
  if (!config) config = await (await fetch("/dashboard-config.json")).json();
  return config;
}

export async function apiBase() {
  const c = await siteConfig();
  return `${location.protocol}//${location.hostname}:${c.apiPort}`;
}

export async function openAIBase() {
  const c = await siteConfig();
  return `${location.protocol}//${location.hostname}:${c.lmstudioPort || c.ollamaPort}/v1`;
}

/** JSON request to the dashboard API; throws {status, message, details} on an error answer. */
export async function api(path, options = {}) {
  const token = localStorage.getItem("adminToken");
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(`${await apiBase()}${path}`, { ...options, headers });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const e = body && body.error ? body.error : { message: text };
    throw { status: response.status, message: e.message, details: e.details || [], current: e.current_revision };
  }
  return body;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

export function bytes(n) {
  if (!n) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
