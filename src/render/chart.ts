// Line charts over layers (asciichart), one series per target, with a legend and a value table.
import asciichart from 'asciichart';
import type { ChalkInstance } from 'chalk';
import type { LayerRecord, LensRecord, TargetEntry } from '../lens/record.js';
import { renderHeader } from './header.js';
import { RESET, SERIES_COLORS } from './style.js';
import { formatProb, padEnd, quoteToken, displayWidth } from './tokens.js';
import { siteLabel, targetOriginNote, visibleLayers, type View } from './view.js';

const LABEL_WIDTH = 9;
const COLUMNS_PER_LAYER = 4;
const HEIGHT = 10;

/** Stretches a series over layers to `COLUMNS_PER_LAYER` columns per layer by linear interpolation. */
function stretch(values: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length - 1; i++) {
    for (let s = 0; s < COLUMNS_PER_LAYER; s++) out.push(values[i] + ((values[i + 1] - values[i]) * s) / COLUMNS_PER_LAYER);
  }
  out.push(values[values.length - 1]);
  return out;
}

/** The x axis: each shown entry's layer number (`3a` after block 3's attention) under its column. */
function xAxis(layers: LayerRecord[]): string {
  // asciichart draws the first point on the axis column, right after the label and a space.
  const indent = ' '.repeat(LABEL_WIDTH + 1);
  let line = indent;
  for (const l of layers) line += `${l.layer}${l.site === 'attn' ? 'a' : ''}`.padEnd(COLUMNS_PER_LAYER);
  return `${line.trimEnd()}\n${indent}layer`;
}

interface ChartSpec {
  /** y values per series, [series][shown layers]. */
  series: number[][];
  /** Axis label for a y value. */
  label: (y: number) => string;
  min?: number;
  max?: number;
  /** Colours per series (default: the series colours in order). */
  colors?: string[];
  /** asciichart's glyphs; its first marks both each series' start and (mirrored, for a negative min) the row it thinks is 0. */
  symbols?: asciichart.PlotConfig['symbols'];
}

function plot(spec: ChartSpec, layers: LayerRecord[], color: boolean): string {
  const chart = asciichart.plot(spec.series.map(stretch), {
    height: HEIGHT, min: spec.min, max: spec.max, offset: 3, symbols: spec.symbols,
    colors: color ? spec.colors ?? SERIES_COLORS : undefined,
    format: (y: number) => spec.label(y).padStart(LABEL_WIDTH).slice(-LABEL_WIDTH),
  });
  return `${chart}\n${xAxis(layers)}`;
}

function mark(i: number, color: boolean): string {
  return color ? `${SERIES_COLORS[i % SERIES_COLORS.length]}──${RESET}` : ['──', '━━', '┄┄', '╌╌'][i % 4];
}

/** A target as the legend names it: its text and id, or its pieces when it is several tokens. */
function describe(t: TargetEntry, firstTokenOnly: boolean): string {
  if (t.pieces.length <= 1) return `${quoteToken(t.text)} (id ${t.id})`;
  if (firstTokenOnly) return `${quoteToken(t.text)} (rank of its first token ${quoteToken(t.pieces[0].text)}, id ${t.id})`;
  return `${quoteToken(t.text)} (${t.pieces.length} tokens ${t.pieces.map((p) => quoteToken(p.text)).join(' ')}: P is their product)`;
}

function legend(record: LensRecord, view: View, firstTokenOnly = false): string {
  const targets = record.layers[0]?.targets ?? [];
  const line = targets.map((t, i) => `${mark(i, view.color)} ${describe(t, firstTokenOnly)}`).join('   ');
  const note = targetOriginNote(view.targetOrigin);
  return note ? `${line}\n${view.c.dim(note)}` : line;
}

function table(record: LensRecord, layers: LayerRecord[], c: ChalkInstance, heads: string[], cells: (l: LayerRecord) => string[]): string {
  const finalLayer = record.layers.at(-1)?.layer ?? 0;
  const rows = layers.map(cells);
  const widths = heads.map((h, j) => Math.max(displayWidth(h), ...rows.map((r) => r[j].length)));
  const labelWidth = Math.max(5, ...layers.map((l) => siteLabel(l, finalLayer).length + 1));
  const label = (s: string) => s.padEnd(labelWidth);
  const lines = [c.dim(`${label('')}${heads.map((h, j) => padEnd(h, widths[j])).join('  ')}`.trimEnd())];
  layers.forEach((l, i) => lines.push(`${c.bold(label(siteLabel(l, finalLayer)))}${rows[i].map((v, j) => v.padStart(widths[j])).join('  ')}`));
  return lines.join('\n');
}

const targetHeads = (record: LensRecord) => (record.layers[0]?.targets ?? []).map((t) => quoteToken(t.text));

/** P(target) per layer (the product over a several-token target's pieces): header, chart, legend, table. */
export function renderProbChart(record: LensRecord, view: View): string {
  const shown = visibleLayers(record.layers, view);
  const series = (record.layers[0]?.targets ?? []).map((_, j) => shown.map((l) => l.targets[j].prob));
  const max = Math.max(...series.flat());
  const chart = plot({ series, min: 0, max: max > 0 ? max : 1, label: (y) => formatProb(Math.max(0, y)) }, shown, view.color);
  const body = table(record, shown, view.c, targetHeads(record), (l) => l.targets.map((t) => formatProb(t.prob)));
  return [renderHeader(record, view.c), view.c.dim('P(target) by layer'), chart, legend(record, view), '', body].join('\n');
}

/** Rank of each target (its first token) per layer on a log scale, rank 1 at the top: header, chart, legend, table. */
export function renderRankChart(record: LensRecord, view: View): string {
  const shown = visibleLayers(record.layers, view);
  const series = (record.layers[0]?.targets ?? []).map((_, j) => shown.map((l) => -Math.log10(l.targets[j].rank)));
  const worst = Math.min(...series.flat());
  const chart = plot({ series, min: Math.min(worst, -1), max: 0, label: (y) => formatRank(10 ** -y) }, shown, view.color);
  const body = table(record, shown, view.c, targetHeads(record), (l) => l.targets.map((t) => String(t.rank)));
  return [renderHeader(record, view.c), view.c.dim('rank of target by layer (log scale, 1 = top)'), chart, legend(record, view, true), '', body].join('\n');
}

/**
 * The difference between two targets per layer: logit(A) − logit(B), or log P(A) − log P(B) when either
 * is several tokens; the chart keeps 0 in range and draws it. Throws unless the record has exactly two targets.
 */
export function renderDiffChart(record: LensRecord, view: View): string {
  const targets = record.layers[0]?.targets ?? [];
  if (targets.length !== 2) throw new RangeError('diff needs exactly two targets');
  const byLogprob = targets.some((t) => t.pieces.length > 1);
  const value = (t: TargetEntry) => (byLogprob ? t.logprob : t.logit);
  const shown = visibleLayers(record.layers, view);
  const diffs = shown.map((l) => value(l.targets[0]) - value(l.targets[1]));
  const [a, b] = targets.map((t) => quoteToken(t.text));
  const title = byLogprob ? `log P(${a}) − log P(${b}) by layer` : `logit(${a}) − logit(${b}) by layer`;
  const { min, max } = zeroOnARow(Math.min(0, ...diffs), Math.max(0, ...diffs));
  const zero = shown.map(() => 0);
  // The zero line is a series of its own, drawn first and dim so the difference stays on top.
  const label = (y: number) => formatSigned(Math.abs(y) < (max - min) * 1e-9 ? 0 : y);
  const symbols: ChartSpec['symbols'] = ['┤', '┤', '╶', '╴', '─', '╰', '╭', '╮', '╯', '│'];
  const chart = plot({ series: [zero, diffs], min, max, label, colors: ['\x1b[2m', SERIES_COLORS[0]], symbols }, shown, view.color);
  const note = targetOriginNote(view.targetOrigin);
  const legendLine = `${mark(0, view.color)} ${describe(targets[0], false)} minus ${describe(targets[1], false)}; the flat line at 0.00: the two are equal`;
  const what = byLogprob ? 'log P' : 'logit';
  const body = table(record, shown, view.c, [`${what} ${a}`, `${what} ${b}`, 'difference'], (l) => {
    const [x, y] = l.targets.map(value);
    return [x.toFixed(3), y.toFixed(3), formatSigned(x - y)];
  });
  return [renderHeader(record, view.c), view.c.dim(title), chart, note ? `${legendLine}\n${view.c.dim(note)}` : legendLine, '', body].join('\n');
}

/**
 * A y range [min, max] ⊇ [lo, hi] (lo ≤ 0 ≤ hi) whose HEIGHT+1 chart rows include 0 exactly: the
 * smallest row step over the choices of how many rows lie below zero.
 */
function zeroOnARow(lo: number, hi: number): { min: number; max: number } {
  if (lo === 0 && hi === 0) return { min: 0, max: 1 };
  let best = { step: Infinity, below: 0 };
  for (let below = 0; below <= HEIGHT; below++) {
    const step = Math.max(lo < 0 ? -lo / below : 0, hi > 0 ? hi / (HEIGHT - below) : 0);
    if (step < best.step) best = { step, below };
  }
  return { min: -best.below * best.step, max: (HEIGHT - best.below) * best.step };
}

function formatSigned(y: number): string {
  const text = Math.abs(y) >= 100 ? y.toFixed(0) : Math.abs(y) >= 10 ? y.toFixed(1) : y.toFixed(2);
  return y > 0 ? `+${text}` : text === '-0.00' ? '0.00' : text;
}

function formatRank(rank: number): string {
  if (rank < 1e4) return String(Math.round(rank));
  return `${Math.round(rank / 1000)}k`;
}
