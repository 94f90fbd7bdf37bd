// The human view of a direct logit attribution: one row per part with its signed bar (negative
// to the left of the axis in ░, positive to the right in █, so no colour is needed), the running
// total at the end of each layer, and the top contributors.
import type { ChalkInstance } from 'chalk';
import { partsSum, runningTotals, type AttributionRecord, type Part } from '../lens/attribution.js';
import { padEnd, quoteToken } from './tokens.js';

const BAR_WIDTH = 20;
const TOP_CONTRIBUTORS = 3;

export interface AttributionView { c: ChalkInstance; color: boolean; defaultTarget?: boolean }

/** A part's label: `embed`, `L01 attn`, `L01 mlp`, `bias`; layer digits as many as `finalLayer` needs (at least 2). */
export function partLabel(part: Part, finalLayer: number): string {
  if (part.layer === null || part.name === 'embed') return part.name;
  return `L${String(part.layer).padStart(Math.max(2, String(finalLayer).length), '0')} ${part.name}`;
}

function signed(value: number): string {
  const text = Math.abs(value) >= 1000 ? value.toExponential(2) : value.toFixed(3);
  return value >= 0 ? `+${text}` : text.replace('-', '−');
}

/** The bar of `value` on a scale where `max` fills BAR_WIDTH: left of the axis when negative. */
function bar(value: number, max: number, c: ChalkInstance): string {
  const cells = max > 0 ? Math.round((Math.abs(value) / max) * BAR_WIDTH) : 0;
  const left = value < 0 ? ' '.repeat(BAR_WIDTH - cells) + c.red('░'.repeat(cells)) : ' '.repeat(BAR_WIDTH);
  const right = value > 0 ? c.green('█'.repeat(cells)) + ' '.repeat(BAR_WIDTH - cells) : ' '.repeat(BAR_WIDTH);
  return `${left}│${right}`;
}

/** The attribution table of one record, with its header, the explained value and the legend. */
export function renderAttribution(record: AttributionRecord, view: AttributionView): string {
  const { c } = view;
  const at = record.tokens[record.position];
  const header = `${c.bold(quoteToken(record.prompt))}  ${c.dim(`position ${record.position} ${at ? quoteToken(at.text) : ''} · direct logit attribution · ${record.model}`)}`;
  const what = record.versus
    ? `logit(${quoteToken(record.target.text)}) − logit(${quoteToken(record.versus.text)})`
    : `logit(${quoteToken(record.target.text)})`;
  const explained = `${what} = ${signed(record.value)} (the model's own) · sum of the parts ${signed(partsSum(record.parts))}`;
  const finalLayer = Math.max(...record.parts.map((p) => p.layer ?? 0));
  const labels = record.parts.map((p) => partLabel(p, finalLayer));
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const values = record.parts.map((p) => signed(p.value));
  const valueWidth = Math.max(...values.map((v) => v.length));
  const max = Math.max(...record.parts.map((p) => Math.abs(p.value)));
  const totals = new Map(runningTotals(record.parts).map(({ layer, total }) => [layer, total]));
  // The running total goes on each layer's last part (its MLP; the embeddings for layer 0).
  const lastOfLayer = new Map<number, number>();
  record.parts.forEach((p, i) => { if (p.layer !== null) lastOfLayer.set(p.layer, i); });
  const rows = record.parts.map((p, i) => {
    const total = p.layer !== null && lastOfLayer.get(p.layer) === i ? `  ${signed(totals.get(p.layer)!)}` : '';
    return `${padEnd(labels[i], labelWidth)}  ${values[i].padStart(valueWidth)}  ${bar(p.value, max, c)}${total}`.trimEnd();
  });
  const head = `${' '.repeat(labelWidth)}  ${'value'.padStart(valueWidth)}  ${'negative ░'.padStart(BAR_WIDTH)}│${'█ positive'.padEnd(BAR_WIDTH)}  running total`;
  const top = record.parts
    .map((p, i) => ({ label: labels[i], value: p.value }))
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value))
    .slice(0, TOP_CONTRIBUTORS)
    .map((p) => `${p.label} ${signed(p.value)}`);
  const legend = [
    `top contributors: ${top.join(', ')}`,
    'running total: the bias plus every part up to that layer, i.e. the lens\'s logit at that layer with the final norm\'s scale frozen at the last layer\'s',
    'direct effects only: each part goes through the final norm with the scale of the real final residual',
    ...(view.defaultTarget ? ['target: the final layer\'s top-1 at this position'] : []),
  ];
  return [header, explained, '', c.dim(head), ...rows, '', ...legend.map((l) => c.dim(l))].join('\n');
}
