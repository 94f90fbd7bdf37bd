// Figures to keep: standalone SVG of the prob, rank and diff charts and of the heatmap grid.
// Strings only; the command layer decides where they are written.
import { isHeadPart, type AttributionRecord, type Part } from '../lens/attribution.js';
import type { LensRecord, TargetEntry } from '../lens/record.js';
import { explainedLine, headLabel, partLabel, signed } from './attribution.js';
import { buildGrid, cutQuoted, darkTextOn, rampColor, type Grid, type HeatBy } from './grid.js';
import { siteLabel } from './view.js';
import { formatProb, quoteToken } from './tokens.js';

/** Which chart: P(target), rank (log scale, 1 at the top), or the difference of two targets. */
export type ChartKind = 'prob' | 'rank' | 'diff';

/** Categorical colours of the series (Tableau 10), in order. */
export const SVG_SERIES_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
export const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';
const MONO = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"';

/** Text safe inside XML character data and attribute values; characters XML 1.0 forbids become U+FFFD. */
export function xmlEscape(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
    .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** An SVG element as a standalone file: the XML declaration, then the element, then a newline. */
export function svgDocument(svg: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`;
}

/** A coordinate with at most two decimals. */
export const num = (v: number) => String(Math.round(v * 100) / 100);
const rgb = ([r, g, b]: [number, number, number]) => `rgb(${r},${g},${b})`;

/** A `<text>` element at (x, y), its content escaped. */
export function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${num(x)}" y="${num(y)}"${attrs ? ` ${attrs}` : ''}>${xmlEscape(content)}</text>`;
}

/** Round tick values covering [min, max], about `count` of them (steps of 1, 2 or 5 × 10^k). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const stepSize = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.floor(min / stepSize) * stepSize; v <= max + stepSize * 1e-9; v += stepSize) ticks.push(Number((Math.round(v / stepSize) * stepSize).toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + stepSize).toPrecision(12)));
  return ticks;
}

function multiToken(t: TargetEntry): boolean {
  return t.pieces.length > 1;
}

/**
 * The per-layer difference of a record's first two targets: logit(A) − logit(B), or the log-probability
 * difference when either target is several tokens. Throws RangeError when there are not two targets.
 */
export function targetDifference(record: LensRecord): { values: number[]; logprob: boolean } {
  const [a, b] = record.layers[0]?.targets ?? [];
  if (!a || !b) throw new RangeError('a difference needs two targets');
  const logprob = multiToken(a) || multiToken(b);
  const value = (t: TargetEntry) => (logprob ? t.logprob : t.logit);
  return { logprob, values: record.layers.map((l) => value(l.targets[0]) - value(l.targets[1])) };
}

function formatRank(rank: number): string {
  if (rank < 1e3) return String(rank);
  if (rank < 1e6) return `${rank / 1e3}k`;
  return `${rank / 1e6}M`;
}

function subtitle(record: LensRecord): string {
  const at = record.tokens[record.position];
  return `position ${record.position}${at ? ` ${quoteToken(at.text)}` : ''} · lens ${record.mode} · ${record.model}`;
}

/**
 * A line chart over layers of one record, as an `<svg>` element: title (the prompt), labelled axes,
 * a legend, one series per target (one series, A − B, for `diff`). Sub-layer entries sit half-way
 * between layers. Throws RangeError when the record has no targets (two for `diff`).
 */
export function renderChartSvg(record: LensRecord, kind: ChartKind): string {
  const targets = record.layers[0]?.targets ?? [];
  if (targets.length === 0) throw new RangeError('a chart needs at least one target');
  const lastLayer = Math.max(...record.layers.map((l) => l.layer));
  const xs = record.layers.map((l) => (l.site === 'attn' ? l.layer - 0.5 : l.layer));
  const labels = record.layers.map((l) => siteLabel(l, lastLayer));

  let series: { name: string; values: number[]; shown: string[] }[];
  let yLabel: string;
  let y: (v: number) => number;
  let ticks: { v: number; label: string }[];
  const X0 = 78, X1 = 700, Y0 = 64, Y1 = 324;
  let zeroLine = false;
  if (kind === 'rank') {
    series = targets.map((t, j) => {
      const values = record.layers.map((l) => l.targets[j].rank);
      return { name: `${quoteToken(t.text)}${multiToken(t) ? ' (first token)' : ''}`, values, shown: values.map(String) };
    });
    const exp = Math.max(1, Math.ceil(Math.log10(Math.max(...series.flatMap((s) => s.values)))));
    y = (r) => Y0 + (Math.log10(Math.max(1, r)) / exp) * (Y1 - Y0);
    ticks = Array.from({ length: exp + 1 }, (_, e) => ({ v: 10 ** e, label: formatRank(10 ** e) }));
    yLabel = 'rank (log scale, 1 = top)';
  } else {
    if (kind === 'diff') {
      const { values, logprob } = targetDifference(record);
      const [a, b] = targets.map((t) => quoteToken(t.text));
      series = [{ name: logprob ? `log P(${a}) − log P(${b})` : `logit(${a}) − logit(${b})`, values, shown: values.map((v) => v.toFixed(3)) }];
      yLabel = logprob ? 'log-probability difference (nats)' : 'logit difference';
      zeroLine = true;
    } else {
      series = targets.map((t, j) => {
        const values = record.layers.map((l) => l.targets[j].prob);
        return { name: quoteToken(t.text), values, shown: values.map(formatProb) };
      });
      yLabel = 'P(target)';
    }
    const all = series.flatMap((s) => s.values);
    const tv = niceTicks(kind === 'prob' ? 0 : Math.min(0, ...all), Math.max(kind === 'prob' ? 1e-3 : 0, ...all));
    const lo = tv[0], hi = tv[tv.length - 1];
    y = (v) => Y1 - ((v - lo) / (hi - lo)) * (Y1 - Y0);
    const decimals = Math.max(0, -Math.floor(Math.log10(tv[1] - tv[0])) - (kind === 'prob' ? 2 : 0));
    ticks = tv.map((v) => ({ v, label: kind === 'prob' ? `${(v * 100).toFixed(decimals)}%` : v.toFixed(decimals) }));
  }
  const span = Math.max(1, lastLayer);
  const x = (v: number) => X0 + (v / span) * (X1 - X0);

  const legendRows = Math.ceil(series.length / 3);
  const height = 392 + legendRows * 20;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="${height}" viewBox="0 0 720 ${height}" ${FONT} font-size="12" class="lens-chart" data-kind="${kind}">`,
    `<rect width="720" height="${height}" fill="#ffffff"/>`,
    text(360, 24, cutQuoted(record.prompt, 90), 'text-anchor="middle" font-size="16" font-weight="bold" class="title"'),
    text(360, 44, subtitle(record), 'text-anchor="middle" fill="#555555"'),
    `<g class="axis y-axis" stroke="#cccccc">`,
    ...ticks.map((t) => `<line x1="${X0}" x2="${X1}" y1="${num(y(t.v))}" y2="${num(y(t.v))}"/>`),
    `</g>`,
    `<g class="ticks" fill="#333333">`,
    ...ticks.map((t) => text(X0 - 6, y(t.v) + 4, t.label, 'text-anchor="end"')),
    ...Array.from({ length: lastLayer + 1 }, (_, l) => text(x(l), Y1 + 18, String(l), 'text-anchor="middle"')),
    `</g>`,
    `<line x1="${X0}" x2="${X0}" y1="${Y0}" y2="${Y1}" stroke="#333333"/>`,
    `<line x1="${X0}" x2="${X1}" y1="${Y1}" y2="${Y1}" stroke="#333333"/>`,
    zeroLine ? `<line class="zero-line" x1="${X0}" x2="${X1}" y1="${num(y(0))}" y2="${num(y(0))}" stroke="#000000" stroke-width="1.5" stroke-dasharray="6 3"/>` : '',
    text(X0 + (X1 - X0) / 2, Y1 + 40, 'layer', 'text-anchor="middle" class="x-label"'),
    text(20, Y0 + (Y1 - Y0) / 2, yLabel, `text-anchor="middle" transform="rotate(-90 20 ${Y0 + (Y1 - Y0) / 2})" class="y-label"`),
  ];
  series.forEach((s, j) => {
    const color = SVG_SERIES_COLORS[j % SVG_SERIES_COLORS.length];
    const points = s.values.map((v, i) => `${num(x(xs[i]))},${num(y(v))}`).join(' ');
    out.push(`<g class="series" data-series="${xmlEscape(s.name)}" stroke="${color}" fill="${color}">`);
    out.push(`<polyline points="${points}" fill="none" stroke-width="2"/>`);
    s.values.forEach((v, i) => out.push(`<circle cx="${num(x(xs[i]))}" cy="${num(y(v))}" r="3.5" data-layer="${labels[i]}" data-value="${v}"><title>${xmlEscape(`${labels[i]} ${s.name}: ${s.shown[i]}`)}</title></circle>`));
    out.push('</g>');
  });
  out.push('<g class="legend">');
  series.forEach((s, j) => {
    const lx = X0 + (j % 3) * 210, ly = Y1 + 64 + Math.floor(j / 3) * 20;
    const color = SVG_SERIES_COLORS[j % SVG_SERIES_COLORS.length];
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    out.push(text(lx + 28, ly, s.name.length > 60 ? `${s.name.slice(0, 59)}…` : s.name, ''));
  });
  out.push('</g>', '</svg>');
  return out.filter((l) => l !== '').join('\n');
}

/** Cell geometry of the heatmap figure, in pixels. */
const CELL_W = 84, CELL_H = 34;

/**
 * The heatmap grid as an `<svg>` element: title, position and layer axes with token labels, one
 * cell per layer and position (top-1 token and value, coloured on the scale) and a colour bar.
 */
export function renderHeatmapGridSvg(grid: Grid): string {
  const left = 64, top = 104;
  const cols = grid.columns.length, rows = grid.rows.length;
  const gridW = cols * CELL_W, gridH = rows * CELL_H;
  const barX = left + gridW + 24;
  const { scale } = grid;
  const sub = `top-1 token by layer and position, coloured by ${scale.name}${scale.by === 'prob' ? '' : ` (${scale.unit})`} · lens ${grid.mode} · ${grid.model}`;
  // About 7 px per character of 12 px sans-serif: wide enough for the subtitle.
  const width = Math.max(barX + 110, left + 20 + 7 * sub.length), height = top + gridH + 44;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12" class="lens-heatmap" data-by="${scale.by}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(left, 24, cutQuoted(grid.prompt, Math.max(40, Math.floor(width / 9))), 'font-size="16" font-weight="bold" class="title"'),
    text(left, 44, sub, 'fill="#555555"'),
    text(left + gridW / 2, 66, 'position (input token)', 'text-anchor="middle" class="x-label"'),
    text(18, top + gridH / 2, 'layer', `text-anchor="middle" transform="rotate(-90 18 ${top + gridH / 2})" class="y-label"`),
    `<g class="columns" ${MONO} font-size="11" text-anchor="middle">`,
  ];
  grid.columns.forEach((col, j) => {
    const cx = left + j * CELL_W + CELL_W / 2;
    out.push(text(cx, 82, String(col.position), 'fill="#777777"'), text(cx, 97, cutQuoted(col.token, 12), 'font-weight="bold"'));
  });
  out.push('</g>', `<g class="rows" ${MONO} font-size="11" text-anchor="end">`);
  grid.rows.forEach((r, i) => out.push(text(left - 6, top + i * CELL_H + CELL_H / 2 + 4, r.label, 'font-weight="bold"')));
  out.push('</g>', `<g class="cells" ${MONO} text-anchor="middle">`);
  grid.cells.forEach((row, i) => row.forEach((cell, j) => {
    const cx = left + j * CELL_W, cy = top + i * CELL_H;
    const ink = darkTextOn(cell.t) ? '#000000' : '#ffffff';
    const tip = [`${grid.rows[i].label} · position ${grid.columns[j].position}`, ...cell.top.map((t) => `${quoteToken(t.token)} ${formatProb(t.prob)}`),
      ...cell.targets.map((t) => `target ${quoteToken(t.text)}: ${formatProb(t.prob)}, rank ${t.rank}`)].join('\n');
    out.push(`<g class="cell" data-row="${grid.rows[i].label}" data-position="${grid.columns[j].position}" data-value="${cell.value}">`,
      `<rect x="${cx}" y="${cy}" width="${CELL_W - 1}" height="${CELL_H - 1}" fill="${rgb(rampColor(cell.t))}"><title>${xmlEscape(tip)}</title></rect>`,
      text(cx + CELL_W / 2, cy + 14, cutQuoted(cell.token, 12), `font-size="11" fill="${ink}"`),
      text(cx + CELL_W / 2, cy + 28, scale.format(cell.value), `font-size="10" fill="${ink}"`),
      '</g>');
  }));
  out.push('</g>');
  // The colour bar: a stack of thin bands from the scale's top (max) to its bottom (min), with ticks.
  const bands = 48, bandH = gridH / bands;
  out.push('<g class="colour-bar">');
  for (let b = 0; b < bands; b++) out.push(`<rect x="${barX}" y="${num(top + b * bandH)}" width="16" height="${num(bandH + 0.5)}" fill="${rgb(rampColor(1 - (b + 0.5) / bands))}"/>`);
  out.push(`<rect x="${barX}" y="${top}" width="16" height="${gridH}" fill="none" stroke="#333333"/>`);
  for (const v of niceTicks(scale.min, scale.max, 4).filter((v) => v <= scale.max + 1e-12)) {
    const ty = top + gridH - ((v - scale.min) / (scale.max - scale.min)) * gridH;
    out.push(`<line x1="${barX + 16}" x2="${barX + 20}" y1="${num(ty)}" y2="${num(ty)}" stroke="#333333"/>`, text(barX + 23, ty + 4, scale.format(v), 'class="tick"'));
  }
  out.push(text(barX + 86, top + gridH / 2, `${scale.name}${scale.by === 'prob' ? '' : ` (${scale.unit})`}`, `text-anchor="middle" transform="rotate(90 ${barX + 86} ${top + gridH / 2})"`));
  out.push('</g>', '</svg>');
  return out.join('\n');
}

/** The heatmap of one prompt's records (one per position) as an `<svg>` element. Throws RangeError on no records. */
export function renderHeatmapSvg(records: LensRecord[], by: HeatBy): string {
  return renderHeatmapGridSvg(buildGrid(records, by));
}

/** The fill of a signed contribution `t` = value / max in [−1, 1]: white at 0, towards green (positive) or red (negative). */
export function signedColor(t: number): string {
  const [r, g, b] = t >= 0 ? [44, 160, 44] : [214, 39, 40];
  const a = Math.min(1, Math.abs(t));
  const mix = (c: number) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

/** Geometry of the attribution figure, in pixels. */
const ATTR = { width: 720, rowH: 18, top: 96, labelX: 96, valueX: 170, zeroX: 440, half: 250, cellW: 64, cellH: 24 };

/**
 * One attribution record as an `<svg>` element: a signed bar per part (negative bars left of the
 * zero line, positive right, the signed value beside each label, so no colour is needed) and, when
 * the record has head parts and `grid` is not false, the layers × heads grid shaded by contribution
 * (each cell's `<title>` gives its value). `color: false` leaves every fill grey or white.
 */
export function renderAttributionSvg(record: AttributionRecord, options: { color?: boolean; grid?: boolean } = {}): string {
  const color = options.color !== false;
  const parts = record.parts.filter((p) => !isHeadPart(p));
  const finalLayer = Math.max(...parts.map((p) => p.layer ?? 0));
  const max = Math.max(...parts.map((p) => Math.abs(p.value)));
  const { width, rowH, top, labelX, valueX, zeroX, half } = ATTR;
  const barsBottom = top + parts.length * rowH;
  const heads = options.grid === false ? [] : record.parts.filter((p) => p.name === 'head');
  const gridTop = barsBottom + 56;
  const gridRows = new Set(heads.map((p) => p.layer)).size;
  const height = heads.length > 0 ? gridTop + 20 + gridRows * ATTR.cellH + 36 : barsBottom + 36;
  const at = record.tokens[record.position];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12" class="lens-attribution">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    text(width / 2, 24, cutQuoted(record.prompt, 90), 'text-anchor="middle" font-size="16" font-weight="bold" class="title"'),
    text(width / 2, 44, `position ${record.position}${at ? ` ${quoteToken(at.text)}` : ''} · direct logit attribution · ${record.model}`, 'text-anchor="middle" fill="#555555"'),
    text(width / 2, 62, explainedLine(record), 'text-anchor="middle" class="explained"'),
    text(zeroX - half / 2, top - 8, '◀ negative', 'text-anchor="middle" fill="#555555"'),
    text(zeroX + half / 2, top - 8, 'positive ▶', 'text-anchor="middle" fill="#555555"'),
    `<g class="parts" ${MONO} font-size="11">`,
  ];
  parts.forEach((p, i) => {
    const y = top + i * rowH;
    const length = max > 0 ? (Math.abs(p.value) / max) * half : 0;
    const x = p.value < 0 ? zeroX - length : zeroX;
    const fill = color ? (p.value < 0 ? '#d62728' : '#2ca02c') : '#888888';
    const label = partLabel(p, finalLayer);
    out.push(`<g class="part" data-name="${p.name}" data-layer="${p.layer ?? ''}" data-value="${p.value}">`,
      text(labelX, y + 13, label, 'text-anchor="end"'),
      text(valueX, y + 13, signed(p.value), 'text-anchor="end"'),
      `<rect x="${num(x)}" y="${y + 3}" width="${num(length)}" height="${rowH - 6}" fill="${fill}"><title>${xmlEscape(`${label}: ${signed(p.value)}`)}</title></rect>`,
      '</g>');
  });
  out.push('</g>', `<line class="zero-line" x1="${zeroX}" x2="${zeroX}" y1="${top - 2}" y2="${barsBottom + 2}" stroke="#000000"/>`);
  if (heads.length > 0) out.push(...headGridSvg(record.parts, finalLayer, gridTop, color));
  out.push('</svg>');
  return out.join('\n');
}

/** The layers × heads grid of the attribution figure: one cell per head and a column for each layer's attn_bias. */
function headGridSvg(all: Part[], finalLayer: number, gridTop: number, color: boolean): string[] {
  const { cellW, cellH, labelX } = ATTR;
  const heads = all.filter((p) => p.name === 'head');
  const count = Math.max(...heads.map((p) => p.head!)) + 1;
  const max = Math.max(...heads.map((p) => Math.abs(p.value)));
  const layers = [...new Set(heads.map((p) => p.layer!))];
  const left = labelX + 8;
  const out = [
    text(left, gridTop - 26, 'heads: each head\'s direct part (z_h · W_O[h] through the frozen norm); they and the bias add up to the layer\'s attn', 'fill="#555555"'),
    `<g class="heads" ${MONO} font-size="10" text-anchor="middle">`,
    ...Array.from({ length: count }, (_, h) => text(left + h * cellW + cellW / 2, gridTop - 6, `h${h}`, '')),
    text(left + count * cellW + cellW / 2, gridTop - 6, 'bias', ''),
  ];
  layers.forEach((l, i) => {
    const y = gridTop + i * cellH;
    out.push(text(labelX, y + 16, partLabel({ name: 'attn', layer: l, value: 0 }, finalLayer).replace(' attn', ''), 'text-anchor="end" font-size="11"'));
    const row = [...Array.from({ length: count }, (_, h) => heads.find((p) => p.layer === l && p.head === h)), all.find((p) => p.name === 'attn_bias' && p.layer === l)];
    row.forEach((p, h) => {
      if (!p) return;
      const x = left + h * cellW;
      const label = p.name === 'head' ? headLabel(p, finalLayer) : partLabel(p, finalLayer);
      const fill = color && max > 0 ? signedColor(p.value / max) : '#ffffff';
      out.push(`<g class="${p.name === 'head' ? 'head' : 'attn-bias'}" data-layer="${l}"${p.head !== undefined ? ` data-head="${p.head}"` : ''} data-value="${p.value}">`,
        `<rect x="${x}" y="${y}" width="${cellW - 1}" height="${cellH - 1}" fill="${fill}" stroke="#cccccc"><title>${xmlEscape(`${label}: ${signed(p.value)}`)}</title></rect>`,
        text(x + cellW / 2, y + 16, signed(p.value), ''),
        '</g>');
    });
  });
  out.push('</g>');
  return out;
}
