// The latent chart: per dimension, μ as a dot with a ±σ bar (top) and σ as a bar against the
// prior's 1 (bottom). Plain SVG, sized by a viewBox so that it scales with its card.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The values as a table, folded under the chart: readable without hovering, and by a screen reader. */
function valuesTable(mu, sigma) {
  const cell = (tag, text, scope) => {
    const td = document.createElement(tag);
    td.textContent = text;
    if (scope) td.scope = scope;
    return td;
  };
  const row = (...cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  };
  const table = document.createElement("table");
  const head = document.createElement("thead");
  head.append(row(cell("th", "Dimension", "col"), cell("th", "μ", "col"), cell("th", "σ", "col")));
  const body = document.createElement("tbody");
  body.append(...mu.map((m, i) => row(cell("th", `z${i}`, "row"), cell("td", m.toFixed(3)), cell("td", sigma[i].toFixed(3)))));
  table.append(head, body);
  const details = document.createElement("details");
  details.className = "latent-values";
  const summary = document.createElement("summary");
  summary.textContent = `μ and σ of the ${mu.length} dimensions, as numbers`;
  details.append(summary, table);
  return details;
}

/** Replace ``container``'s content with a chart of ``mu`` and ``sigma`` (arrays of equal length),
 * and their values in a table under it. */
export function latentChart(container, mu, sigma) {
  const n = mu.length;
  const W = 420;
  const left = 30;
  const right = 6;
  const top = { y: 18, h: 130 };
  const bottom = { y: 178, h: 56 };
  const H = bottom.y + bottom.h + 22;
  const step = (W - left - right) / n;
  const x = (i) => left + (i + 0.5) * step;
  const range = Math.max(3, ...mu.map((m, i) => Math.abs(m) + sigma[i]));
  const yTop = (v) => top.y + top.h / 2 - (v / range) * (top.h / 2);
  const sMax = Math.max(1.2, ...sigma);
  const yBot = (v) => bottom.y + bottom.h - (v / sMax) * bottom.h;

  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": "latent-chart-title",
    class: "latent-svg",
  });
  svg.append(el("title", { id: "latent-chart-title" }, `μ and σ of ${n} latent dimensions`));

  // axes and labels
  svg.append(el("line", { x1: left, x2: W - right, y1: yTop(0), y2: yTop(0), class: "axis" }));
  svg.append(el("text", { x: left - 6, y: yTop(0) + 4, class: "tick", "text-anchor": "end" }, "0"));
  const r = Math.round(range);
  svg.append(el("text", { x: left - 6, y: yTop(r) + 4, class: "tick", "text-anchor": "end" }, `+${r}`));
  svg.append(el("text", { x: left - 6, y: yTop(-r) + 4, class: "tick", "text-anchor": "end" }, `−${r}`));
  svg.append(el("text", { x: left, y: 11, class: "label" }, "μ ± σ"));
  svg.append(el("text", { x: left, y: bottom.y - 6, class: "label" }, "σ (prior: 1)"));
  svg.append(el("line", { x1: left, x2: W - right, y1: yBot(1), y2: yBot(1), class: "prior" }));
  svg.append(el("text", { x: left - 6, y: yBot(1) + 4, class: "tick", "text-anchor": "end" }, "1"));
  svg.append(el("line", { x1: left, x2: W - right, y1: yBot(0), y2: yBot(0), class: "axis" }));

  const bars = el("g", { class: "dims" });
  for (let i = 0; i < n; i++) {
    const g = el("g", { class: "dim", "data-dim": i, "data-mu": mu[i], "data-sigma": sigma[i] });
    g.append(el("title", {}, `z${i}: μ ${mu[i].toFixed(3)}, σ ${sigma[i].toFixed(3)}`));
    g.append(el("rect", { x: x(i) - step / 2, y: top.y, width: step, height: bottom.y + bottom.h - top.y, class: "hover" }));
    g.append(el("line", { x1: x(i), x2: x(i), y1: yTop(mu[i] - sigma[i]), y2: yTop(mu[i] + sigma[i]), class: "whisker" }));
    g.append(el("circle", { cx: x(i), cy: yTop(mu[i]), r: Math.min(3.2, step / 2.5), class: "mu" }));
    const used = sigma[i] < 0.5;
    g.append(el("rect", {
      x: x(i) - step * 0.35,
      y: yBot(sigma[i]),
      width: step * 0.7,
      height: yBot(0) - yBot(sigma[i]),
      class: used ? "sigma used" : "sigma",
    }));
    bars.append(g);
  }
  svg.append(bars);
  const every = n > 32 ? 8 : n > 16 ? 4 : 2;
  for (let i = 0; i < n; i += every) {
    svg.append(el("text", { x: x(i), y: H - 6, class: "tick", "text-anchor": "middle" }, String(i)));
  }
  container.replaceChildren(svg, valuesTable(mu, sigma));
}
