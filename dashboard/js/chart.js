// A small SVG line chart, drawn by our own code (no library): a y axis with its unit and three ticks, an x
// axis with clock times, and a hover (or keyboard) readout of the nearest point.
const NS = "http://www.w3.org/2000/svg";

export function lineChart(container, points, { label, unit = "", color = "#4a6cf7", format = formatValue } = {}) {
  const values = points.filter((p) => p[1] != null);
  const w = Math.max(220, Math.round(container.clientWidth || 300) - 28), h = 130;
  const m = { left: 40, right: 8, top: 8, bottom: 20 };
  const ys = values.map((p) => p[1]);
  // All zeros (or nothing yet): a 0–1 axis rather than one scaled to a vanishing maximum.
  const top = Math.max(0, ...ys);
  const max = niceMax(top > 0 ? top : 1);
  const xs = values.map((p) => p[0]);
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const sx = (x) => (x1 === x0 ? (m.left + w - m.right) / 2 : m.left + ((x - x0) / (x1 - x0)) * (w - m.left - m.right));
  const sy = (y) => h - m.bottom - (y / max) * (h - m.top - m.bottom);
  const path = values.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  const last = ys.length ? ys[ys.length - 1] : null;
  container.innerHTML = "";
  const head = document.createElement("div");
  head.className = "chart-head";
  head.innerHTML = `<div class="muted"></div><div class="value"></div>`;
  head.firstChild.textContent = unit ? `${label} (${unit})` : label;
  head.lastChild.textContent = `${last == null ? "–" : format(last)}${unit && last != null ? " " + unit : ""}`;
  container.append(head);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", String(w));
  svg.setAttribute("height", String(h));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: ${values.length} points${last == null ? "" : `, latest ${format(last)} ${unit}`}`);
  svg.setAttribute("tabindex", "0");
  svg.dataset.points = String(values.length);
  const ticks = [0, max / 2, max].map((v) =>
    `<line x1="${m.left}" y1="${sy(v)}" x2="${w - m.right}" y2="${sy(v)}" stroke="#e3e6ef"/>` +
    `<text x="${m.left - 4}" y="${sy(v) + 4}" text-anchor="end" class="tick">${escapeText(format(v))}</text>`).join("");
  // Three clock times when the points span more than a minute, else one (they would print on top of each other).
  const times = xs.length ? (x1 - x0 > 60 ? [x0, (x0 + x1) / 2, x1] : [x1]).map((t, i, all) =>
    `<text x="${all.length === 1 ? w - m.right : sx(t)}" y="${h - 4}" text-anchor="${all.length === 1 ? "end" : ["start", "middle", "end"][i]}" class="tick">${clock(t)}</text>`).join("") : "";
  svg.innerHTML = ticks + times +
    (path ? `<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>` : "") +
    `<line class="cursor" y1="${m.top}" y2="${h - m.bottom}" stroke="#9aa3b5" visibility="hidden"/>` +
    `<circle class="dot" r="3.5" fill="${color}" visibility="hidden"/>`;
  container.append(svg);
  const readout = document.createElement("div");
  readout.className = "readout muted";
  readout.setAttribute("aria-live", "polite");
  readout.textContent = values.length ? "hover for a reading" : "no data yet";
  container.append(readout);
  let index = values.length - 1;
  const point = (i) => {
    if (!values.length) return;
    index = Math.max(0, Math.min(values.length - 1, i));
    const [t, v] = values[index];
    const cursor = svg.querySelector(".cursor"), dot = svg.querySelector(".dot");
    cursor.setAttribute("x1", sx(t)); cursor.setAttribute("x2", sx(t)); cursor.setAttribute("visibility", "visible");
    dot.setAttribute("cx", sx(t)); dot.setAttribute("cy", sy(v)); dot.setAttribute("visibility", "visible");
    readout.textContent = `${clock(t, true)} · ${format(v)}${unit ? " " + unit : ""}`;
  };
  svg.addEventListener("mousemove", (e) => {
    const box = svg.getBoundingClientRect();
    const x = ((e.clientX - box.left) / box.width) * w;
    let best = 0;
    values.forEach((p, i) => { if (Math.abs(sx(p[0]) - x) < Math.abs(sx(values[best][0]) - x)) best = i; });
    point(best);
  });
  svg.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") point(index - 1);
    if (e.key === "ArrowRight") point(index + 1);
  });
  return svg;
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 2.5, 5, 10].map((k) => k * p).find((c) => c >= v) || v;
}

function clock(seconds, withSeconds = false) {
  return new Date(seconds * 1000).toLocaleTimeString([], withSeconds ? {} : { hour: "2-digit", minute: "2-digit" });
}

function escapeText(s) {
  return String(s).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);
}

export function formatValue(v) {
  if (v === 0) return "0";
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v >= 0.01 ? v.toFixed(2) : v.toExponential(0);
}
