// A small SVG line chart, drawn by our own code (no library).
export function lineChart(container, points, { label, unit = "", color = "#4a6cf7" } = {}) {
  const values = points.filter((p) => p[1] != null);
  const w = 300, h = 100, pad = 4;
  const ys = values.map((p) => p[1]);
  const max = Math.max(1e-9, ...ys);
  const xs = values.map((p) => p[0]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = (x) => (x1 === x0 ? w / 2 : pad + ((x - x0) / (x1 - x0)) * (w - 2 * pad));
  const sy = (y) => h - pad - (y / max) * (h - 2 * pad);
  const path = values.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  const last = ys.length ? ys[ys.length - 1] : null;
  container.innerHTML = "";
  const head = document.createElement("div");
  head.innerHTML = `<div class="muted">${label}</div><div class="value">${last == null ? "–" : format(last)}${unit ? " " + unit : ""}</div>`;
  container.append(head);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.points = String(values.length);
  svg.innerHTML = `<line x1="0" y1="${h - pad}" x2="${w}" y2="${h - pad}" stroke="#e3e6ef"/>` +
    (path ? `<path d="${path}" fill="none" stroke="${color}" stroke-width="2" vector-effect="non-scaling-stroke"/>` : "");
  container.append(svg);
  return svg;
}

function format(v) {
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}
