// Line charts over layers (asciichart), one series per target, with a legend and a value table.
import asciichart from 'asciichart';
import type { ChalkInstance } from 'chalk';
import type { LensRecord } from '../lens/record.js';
import { layerLabel, renderHeader } from './header.js';
import { RESET, SERIES_COLORS } from './style.js';
import { formatProb, padEnd, quoteToken, displayWidth } from './tokens.js';

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

/** The x axis: a layer number under every layer's column. */
function xAxis(layers: number): string {
  // asciichart draws the first point on the axis column, right after the label and a space.
  const indent = ' '.repeat(LABEL_WIDTH + 1);
  let line = indent;
  for (let l = 0; l < layers; l++) line += String(l).padEnd(COLUMNS_PER_LAYER);
  return `${line.trimEnd()}\n${indent}layer`;
}

interface ChartSpec {
  /** y values per series, [series][layers]. */
  series: number[][];
  /** Axis label for a y value. */
  label: (y: number) => string;
  min?: number;
  max?: number;
}

function plot(spec: ChartSpec, color: boolean): string {
  const chart = asciichart.plot(spec.series.map(stretch), {
    height: HEIGHT, min: spec.min, max: spec.max, offset: 3,
    colors: color ? SERIES_COLORS : undefined,
    format: (y: number) => spec.label(y).padStart(LABEL_WIDTH).slice(-LABEL_WIDTH),
  });
  return `${chart}\n${xAxis(spec.series[0].length)}`;
}

function legend(record: LensRecord, color: boolean): string {
  const targets = record.layers[0]?.targets ?? [];
  return targets.map((t, i) => {
    const mark = color ? `${SERIES_COLORS[i % SERIES_COLORS.length]}──${RESET}` : ['──', '━━', '┄┄', '╌╌'][i % 4];
    return `${mark} ${quoteToken(t.text)} (id ${t.id})`;
  }).join('   ');
}

function table(record: LensRecord, c: ChalkInstance, cell: (t: { prob: number; rank: number }) => string): string {
  const targets = record.layers[0]?.targets ?? [];
  const heads = targets.map((t) => quoteToken(t.text));
  const rows = record.layers.map((l) => l.targets.map(cell));
  const widths = heads.map((h, j) => Math.max(displayWidth(h), ...rows.map((r) => r[j].length)));
  const label = (s: string) => s.padEnd(5);
  const lines = [c.dim(`${label('')}${heads.map((h, j) => padEnd(h, widths[j])).join('  ')}`.trimEnd())];
  record.layers.forEach((l, i) => lines.push(`${c.bold(label(layerLabel(l.layer, record.layers.length)))}${rows[i].map((v, j) => v.padStart(widths[j])).join('  ')}`));
  return lines.join('\n');
}

/** P(target) per layer: header, chart, legend, table. */
export function renderProbChart(record: LensRecord, c: ChalkInstance, color: boolean): string {
  const series = (record.layers[0]?.targets ?? []).map((_, j) => record.layers.map((l) => l.targets[j].prob));
  const max = Math.max(...series.flat());
  const chart = plot({ series, min: 0, max: max > 0 ? max : 1, label: (y) => formatProb(Math.max(0, y)) }, color);
  return [renderHeader(record, c), c.dim('P(target) by layer'), chart, legend(record, color), '', table(record, c, (t) => formatProb(t.prob))].join('\n');
}

/** Rank of each target per layer on a log scale, rank 1 at the top: header, chart, legend, table. */
export function renderRankChart(record: LensRecord, c: ChalkInstance, color: boolean): string {
  const series = (record.layers[0]?.targets ?? []).map((_, j) => record.layers.map((l) => -Math.log10(l.targets[j].rank)));
  const worst = Math.min(...series.flat());
  const chart = plot({ series, min: Math.min(worst, -1), max: 0, label: (y) => formatRank(10 ** -y) }, color);
  return [renderHeader(record, c), c.dim('rank of target by layer (log scale, 1 = top)'), chart, legend(record, color), '', table(record, c, (t) => String(t.rank))].join('\n');
}

function formatRank(rank: number): string {
  if (rank < 1e4) return String(Math.round(rank));
  return `${Math.round(rank / 1000)}k`;
}
