// `lens eval`'s figures: per layer KL(final ‖ layer), cross-entropy and entropy, one panel each,
// the logit lens and the tuned lens as two lines; standalone SVG, or an HTML page with its table.
import type { EvalLayer } from '../lens/eval.js';
import { htmlPage } from './html.js';
import { FONT, niceTicks, num, SVG_SERIES_COLORS, text, xmlEscape } from './svg.js';

/** What the figures show: per layer means in nats [L+1] and the factor to bits per byte. */
export interface EvalChart { model: string; tokens: number; bytes: number; bitsPerByte: number; logit: EvalLayer[]; tuned?: EvalLayer[] }

const MEASURES = [
  { key: 'kl', label: 'KL(final ‖ layer)' },
  { key: 'crossEntropy', label: 'cross-entropy of the next token' },
  { key: 'entropy', label: 'entropy' },
] as const;

const WIDTH = 720, PANEL = 230, TOP = 84, X0 = 78, X1 = 700;

/** The lenses drawn, in order, with their colours. */
function lensesOf(chart: EvalChart): { name: string; layers: EvalLayer[]; color: string }[] {
  return [{ name: 'logit lens', layers: chart.logit, color: SVG_SERIES_COLORS[0] }, ...(chart.tuned ? [{ name: 'tuned lens', layers: chart.tuned, color: SVG_SERIES_COLORS[1] }] : [])];
}

/** One panel: axes from 0 to the largest value, layer ticks, a line per lens. */
function panel(chart: EvalChart, measure: (typeof MEASURES)[number], top: number): string[] {
  const lenses = lensesOf(chart);
  const lastLayer = chart.logit.length - 1;
  const Y0 = top + 24, Y1 = top + PANEL - 46;
  const ticks = niceTicks(0, Math.max(1e-3, ...lenses.flatMap((l) => l.layers.map((layer) => layer[measure.key]))), 4);
  const hi = ticks[ticks.length - 1];
  const x = (layer: number) => X0 + (layer / Math.max(1, lastLayer)) * (X1 - X0);
  const y = (v: number) => Y1 - (v / hi) * (Y1 - Y0);
  const decimals = Math.max(0, -Math.floor(Math.log10(ticks[1] - ticks[0])));
  const out = [
    `<g class="panel" data-measure="${measure.key}">`,
    text(X0, top + 12, `${measure.label}, nats per token`, 'font-weight="bold"'),
    `<g class="axis y-axis" stroke="#cccccc">`, ...ticks.map((t) => `<line x1="${X0}" x2="${X1}" y1="${num(y(t))}" y2="${num(y(t))}"/>`), '</g>',
    `<g class="ticks" fill="#333333">`,
    ...ticks.map((t) => text(X0 - 6, y(t) + 4, t.toFixed(decimals), 'text-anchor="end"')),
    ...chart.logit.map((_, l) => text(x(l), Y1 + 16, String(l), 'text-anchor="middle"')),
    '</g>',
    `<line x1="${X0}" x2="${X0}" y1="${Y0}" y2="${Y1}" stroke="#333333"/>`,
    `<line x1="${X0}" x2="${X1}" y1="${Y1}" y2="${Y1}" stroke="#333333"/>`,
    text(X0 + (X1 - X0) / 2, Y1 + 34, 'layer', 'text-anchor="middle" class="x-label"'),
  ];
  for (const lens of lenses) {
    out.push(`<g class="series" data-series="${lens.name}" stroke="${lens.color}" fill="${lens.color}">`);
    out.push(`<polyline points="${lens.layers.map((layer) => `${num(x(layer.layer))},${num(y(layer[measure.key]))}`).join(' ')}" fill="none" stroke-width="2"/>`);
    for (const layer of lens.layers) {
      const value = layer[measure.key];
      out.push(`<circle cx="${num(x(layer.layer))}" cy="${num(y(value))}" r="3.5" data-layer="${layer.layer}" data-value="${value}"><title>${xmlEscape(`L${layer.layer} ${lens.name}: ${value.toFixed(4)} nats (${(value * chart.bitsPerByte).toFixed(4)} bits per byte)`)}</title></circle>`);
    }
    out.push('</g>');
  }
  out.push('</g>');
  return out;
}

/** The three panels as one `<svg>` element (title, legend, KL, cross-entropy, entropy over layers). */
export function renderEvalSvg(chart: EvalChart): string {
  const height = TOP + MEASURES.length * PANEL;
  const legend = lensesOf(chart).flatMap((lens, j) => {
    const lx = X0 + j * 210;
    return [`<line x1="${lx}" x2="${lx + 22}" y1="${66}" y2="${66}" stroke="${lens.color}" stroke-width="3"/>`, text(lx + 28, 70, lens.name)];
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT} font-size="12" class="lens-eval">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    text(WIDTH / 2, 24, `lens eval · ${chart.model}`, 'text-anchor="middle" font-size="16" font-weight="bold" class="title"'),
    text(WIDTH / 2, 44, `${chart.tokens} tokens predicted, ${chart.bytes} bytes · means over every predicted token`, 'text-anchor="middle" fill="#555555"'),
    `<g class="legend">`, ...legend, '</g>',
    ...MEASURES.flatMap((measure, i) => panel(chart, measure, TOP + i * PANEL)),
    '</svg>',
  ].join('\n');
}

/** The HTML page: the chart, then the table of every value in nats and bits per byte. */
export function renderEvalHtml(chart: EvalChart): string {
  const lenses = lensesOf(chart);
  const head = `<tr><th class="layer">layer</th>${MEASURES.flatMap((m) => lenses.map((l) => `<th>${xmlEscape(`${m.label} ${l.name.split(' ')[0]}`)}</th>`)).join('')}</tr>`;
  const rows = chart.logit.map((_, i) => `<tr><th class="layer">L${i}</th>${MEASURES.flatMap((m) => lenses.map((l) => {
    const value = l.layers[i][m.key];
    return `<td class="num">${value.toFixed(4)} (${(value * chart.bitsPerByte).toFixed(4)})</td>`;
  })).join('')}</tr>`).join('\n');
  const body = `<div class="view eval">${renderEvalSvg(chart)}</div>\n`
    + `<p class="meta">nats per token (bits per byte = nats × tokens / bytes / ln 2 = × ${chart.bitsPerByte.toFixed(4)})</p>\n`
    + `<div class="scroll"><table class="values eval"><thead>${head}</thead><tbody>\n${rows}</tbody></table></div>`;
  return htmlPage(`lens eval — ${chart.model}`, 'lens eval', `${chart.model} · ${chart.tokens} tokens predicted, ${chart.bytes} bytes`, body);
}
