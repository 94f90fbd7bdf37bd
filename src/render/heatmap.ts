// lens heatmap on a terminal: rows are layers, columns positions, each cell the layer's top-1
// token with the value its colour encodes; wider grids wrap into bands of positions.
import type { ChalkInstance } from 'chalk';
import type { LensRecord } from '../lens/record.js';
import { buildGrid, cutQuoted, type Grid, type HeatBy } from './grid.js';
import { displayWidth, padEnd, quoteToken } from './tokens.js';

/** Display columns of a cell's token (quotes included) and of its value. */
const TOKEN_WIDTH = 9;
const VALUE_WIDTH = 4;
const CELL_WIDTH = TOKEN_WIDTH + 1 + VALUE_WIDTH;
const GAP = 1;

const BY_TITLE: Record<HeatBy, string> = {
  prob: 'probability of the top-1 token',
  entropy: 'entropy of the layer (nats)',
  kl: 'KL to the final layer (nats)',
};

/**
 * The terminal scale: viridis in eight xterm-256 colours, hand-picked so that neighbouring steps
 * differ (the nearest cube colours of viridis's samples repeat), dark purple to yellow.
 */
const STEP_COLORS = [53, 60, 24, 30, 36, 71, 113, 184];
const STEPS = STEP_COLORS.length;

/** The step of a scale position: 0 … STEPS-1. */
function step(t: number): number {
  return Math.min(STEPS - 1, Math.max(0, Math.floor(t * STEPS)));
}

/** `text` on the background of scale step `s`, in 256 colours; dark text on the light half. */
function paint(text: string, s: number): string {
  return `\x1b[48;5;${STEP_COLORS[s]}m\x1b[38;5;${s >= STEPS / 2 ? 16 : 231}m${text}\x1b[0m`;
}

export interface HeatmapOptions {
  /** Terminal width in columns; the grid wraps into bands of positions to fit. */
  width: number;
}

/** Which columns go in each band so that a band fits `width` (at least one column per band). */
function bands(columns: number, labelWidth: number, width: number): number[][] {
  const per = Math.max(1, Math.floor((width - labelWidth + GAP) / (CELL_WIDTH + GAP)));
  const out: number[][] = [];
  for (let start = 0; start < columns; start += per) out.push(Array.from({ length: Math.min(per, columns - start) }, (_, i) => start + i));
  return out;
}

function legend(grid: Grid, c: ChalkInstance, color: boolean): string {
  const { scale } = grid;
  const range = `${scale.format(scale.min)} … ${scale.format(scale.max)}`;
  const what = scale.by === 'prob' ? `${scale.name} in %` : `${scale.name} in ${scale.unit}`;
  if (!color) return c.dim(`cells: top-1 token and ${what}; scale ${range}`);
  const swatches = Array.from({ length: STEPS }, (_, s) => paint(` ${scale.format(scale.min + ((scale.max - scale.min) * s) / STEPS)}+ `, s)).join('');
  return `${c.dim(`cells: top-1 token and ${what}; colour`)} ${swatches}`;
}

/** A built grid as text (no trailing newline): header, bands of positions with their headers, legend. */
export function renderHeatmapGrid(grid: Grid, c: ChalkInstance, color: boolean, options: HeatmapOptions): string {
  const labelWidth = Math.max(...grid.rows.map((r) => r.label.length)) + 2;
  const positions = grid.columns.map((col) => col.position);
  const where = positions.length === 1 ? `position ${positions[0]}` : `positions ${positions[0]}–${positions[positions.length - 1]}`;
  const out = [
    `${c.bold(quoteToken(grid.prompt))}  ${c.dim(`${where} · lens ${grid.mode} · ${grid.model}`)}`,
    c.dim(`top-1 token by layer and position, coloured by ${BY_TITLE[grid.scale.by]}`),
  ];
  for (const band of bands(grid.columns.length, labelWidth, options.width)) {
    const row = (label: string, cells: string[]) => `${c.bold(label)}${' '.repeat(labelWidth - label.length)}${cells.join(' '.repeat(GAP))}`.trimEnd();
    out.push('');
    // Styles wrap the text alone, so the padding after the last column can be trimmed.
    const head = (text: string, style: (s: string) => string) => style(text) + ' '.repeat(CELL_WIDTH - displayWidth(text));
    out.push(row('', band.map((j) => head(String(grid.columns[j].position), c.dim))));
    out.push(row('', band.map((j) => head(cutQuoted(grid.columns[j].token, CELL_WIDTH), c.bold))));
    grid.rows.forEach((r, i) => {
      const cells = band.map((j) => {
        const cell = grid.cells[i][j];
        const text = `${padEnd(cutQuoted(cell.token, TOKEN_WIDTH), TOKEN_WIDTH)} ${grid.scale.format(cell.value).padStart(VALUE_WIDTH)}`;
        return color ? paint(text, step(cell.t)) : text;
      });
      out.push(row(r.label, cells));
    });
  }
  out.push('', legend(grid, c, color));
  return out.join('\n');
}

/** The heatmap of one prompt's records (one per position, ascending) as text. Throws RangeError on no records. */
export function renderHeatmap(records: LensRecord[], by: HeatBy, c: ChalkInstance, color: boolean, options: HeatmapOptions): string {
  return renderHeatmapGrid(buildGrid(records, by), c, color, options);
}
