// The layer × position grid that the heatmap draws, built once from a prompt's records and
// shared by the terminal, SVG and HTML renderers so the three always agree.
import type { LayerRecord, LensMode, LensRecord, Site, TargetEntry, TopEntry } from '../lens/record.js';
import { displayWidth, quoteToken } from './tokens.js';
import { siteLabel } from './view.js';

/** What a heatmap cell's colour encodes. */
export type HeatBy = 'prob' | 'entropy' | 'kl';
export const HEAT_BY: readonly HeatBy[] = ['prob', 'entropy', 'kl'];

export interface GridCell {
  /** The layer's top-1 token at this position. */
  token: string;
  /** The value the colour encodes (probability, or nats). */
  value: number;
  /** `value` placed on the scale, 0 … 1. */
  t: number;
  top: TopEntry[];
  targets: TargetEntry[];
}

export interface GridScale {
  by: HeatBy;
  min: number;
  max: number;
  /** What the value is, for legends: "P(top-1)", "entropy", "KL to final". */
  name: string;
  /** The unit in words, for legends: "%", "nats". */
  unit: string;
  /** A value in at most 4 characters: "51%", "4.39", "10.8". */
  format: (value: number) => string;
}

export interface Grid {
  prompt: string;
  model: string;
  mode: LensMode;
  /** One per column: the absolute position and its input token. */
  columns: { position: number; token: string }[];
  /** One per row, in the records' order (computation order). */
  rows: { label: string; layer: number; site: Site }[];
  /** cells[row][column]. */
  cells: GridCell[][];
  scale: GridScale;
}

/** A value in nats in at most 4 characters. */
export function formatNats(v: number): string {
  if (v < 9.995) return v.toFixed(2);
  if (v < 99.95) return v.toFixed(1);
  return v.toFixed(0);
}

/** A probability as a whole percentage, at most 4 characters: "0%" … "100%". */
export function formatPercent(p: number): string {
  return `${Math.round(p * 100)}%`;
}

/**
 * The grid of one prompt from its records (one per position, positions ascending, the same layer
 * entries in each). Throws RangeError on no records or records whose layer entries differ.
 */
export function buildGrid(records: LensRecord[], by: HeatBy): Grid {
  const first = records[0];
  if (!first) throw new RangeError('a heatmap needs at least one record');
  const lastLayer = Math.max(...first.layers.map((l) => l.layer));
  const rows = first.layers.map((l) => ({ label: siteLabel(l, lastLayer), layer: l.layer, site: l.site }));
  for (const r of records) {
    if (r.layers.length !== rows.length || r.layers.some((l, i) => siteLabel(l, lastLayer) !== rows[i].label)) {
      throw new RangeError('records of one heatmap must have the same layers');
    }
  }
  const valueOf = (l: LayerRecord): number => (by === 'prob' ? (l.top[0]?.prob ?? 0) : by === 'entropy' ? l.entropy : l.kl_to_final);
  const values = rows.map((_, i) => records.map((r) => valueOf(r.layers[i])));
  // Probability has a natural range; entropy and KL are scaled to the largest value shown.
  const max = by === 'prob' ? 1 : Math.max(0, ...values.flat());
  const span = max > 0 ? max : 1;
  const scale: GridScale = by === 'prob'
    ? { by, min: 0, max: 1, name: 'P(top-1)', unit: '%', format: formatPercent }
    : { by, min: 0, max: span, name: by === 'entropy' ? 'entropy' : 'KL to final', unit: 'nats', format: formatNats };
  const cells = rows.map((_, i) => records.map((r, j): GridCell => {
    const l = r.layers[i];
    const value = values[i][j];
    return { token: l.top[0]?.token ?? '', value, t: Math.min(1, Math.max(0, value / span)), top: l.top, targets: l.targets };
  }));
  return {
    prompt: first.prompt, model: first.model, mode: first.mode, rows, cells, scale,
    columns: records.map((r) => ({ position: r.position, token: r.tokens[r.position]?.text ?? '' })),
  };
}

/** A token quoted (see quoteToken) and cut to at most `width` display columns, keeping both quotes: "Schwarz…". */
export function cutQuoted(text: string, width: number): string {
  const quoted = quoteToken(text);
  if (displayWidth(quoted) <= width) return quoted;
  let inner = '';
  for (const ch of quoted.slice(1, -1)) {
    if (displayWidth(inner + ch) > width - 3) break;
    inner += ch;
  }
  return `"${inner}…"`;
}

/** Viridis, sampled at nine points (matplotlib's colormap): dark purple at 0, yellow at 1. */
const VIRIDIS: [number, number, number][] = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

/** The colour of a scale position t ∈ [0, 1] as [r, g, b] 0…255, interpolated along viridis. */
export function rampColor(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return [0, 1, 2].map((k) => Math.round(VIRIDIS[i][k] + (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) * f)) as [number, number, number];
}

/** Whether text on a background of colour t reads better dark (the light end of the ramp). */
export function darkTextOn(t: number): boolean {
  const [r, g, b] = rampColor(t);
  return 0.299 * r + 0.587 * g + 0.114 * b > 140;
}
