// The per-layer top-k table: one line per layer (and sub-layer), tokens quoted, coloured by probability.
import type { ChalkInstance } from 'chalk';
import type { LensRecord } from '../lens/record.js';
import { renderHeader } from './header.js';
import { displayWidth, formatProb, padEnd, quoteToken } from './tokens.js';
import { siteLabel, visibleLayers, type View } from './view.js';

function shade(c: ChalkInstance, p: number, text: string): string {
  if (p >= 0.5) return c.bold.green(text);
  if (p >= 0.2) return c.green(text);
  if (p >= 0.05) return c.yellow(text);
  return c.dim(text);
}

/** The table for one record, as lines joined by \n (no trailing newline). */
export function renderTopk(record: LensRecord, view: View): string {
  const { c } = view;
  const finalLayer = record.layers.at(-1)?.layer ?? 0;
  const shown = visibleLayers(record.layers, view);
  const k = Math.max(0, ...shown.map((l) => l.top.length));
  const cells = shown.map((l) => l.top.map((t) => ({ token: quoteToken(t.token), prob: formatProb(t.prob), p: t.prob })));
  const tokenWidth = Array.from({ length: k }, (_, j) => Math.max(0, ...cells.map((row) => (row[j] ? displayWidth(row[j].token) : 0))));
  const probWidth = Array.from({ length: k }, (_, j) => Math.max(0, ...cells.map((row) => (row[j] ? row[j].prob.length : 0))));
  const labelWidth = Math.max(...shown.map((l) => siteLabel(l, finalLayer).length));
  const lines = shown.map((layer, i) => {
    const parts = cells[i].map((cell, j) => shade(c, cell.p, `${padEnd(cell.token, tokenWidth[j])} ${cell.prob.padStart(probWidth[j])}`));
    return `${c.bold(siteLabel(layer, finalLayer).padEnd(labelWidth))}  ${parts.join('   ')}`.trimEnd();
  });
  return [renderHeader(record, c), ...lines].join('\n');
}
