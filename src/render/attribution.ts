// The human view of a direct logit attribution: one row per part with its signed bar (negative
// to the left of the axis in ░, positive to the right in █, so no colour is needed), the running
// total at the end of each layer, and the top contributors.
import type { ChalkInstance } from 'chalk';
import { isHeadPart, partsSum, runningTotals, type AttributionRecord, type Part } from '../lens/attribution.js';
import { padEnd, quoteToken } from './tokens.js';

const BAR_WIDTH = 20;
const TOP_CONTRIBUTORS = 3;

export interface AttributionView { c: ChalkInstance; color: boolean; defaultTarget?: boolean }

/** A part's label: `embed`, `L01 attn`, `L01 mlp`, `bias`; layer digits as many as `finalLayer` needs (at least 2). */
export function partLabel(part: Part, finalLayer: number): string {
  if (part.layer === null || part.name === 'embed') return part.name;
  return `L${String(part.layer).padStart(Math.max(2, String(finalLayer).length), '0')} ${part.name}`;
}

/** A value with its sign always shown (+1.234, −0.500; exponent form from 1000 on). */
export function signed(value: number): string {
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

/** What is explained, the model's own value and the sum of the parts: `logit(" x") = +1.234 (the model's own) · sum of the parts +1.234`. */
export function explainedLine(record: AttributionRecord): string {
  const what = record.versus
    ? `logit(${quoteToken(record.target.text)}) − logit(${quoteToken(record.versus.text)})`
    : `logit(${quoteToken(record.target.text)})`;
  const capped = record.softcap ? ` before the softcap ${record.softcap}` : '';
  // A head that quantizes its input (q8) is not linear in the parts: the gap is its rounding.
  const rounding = record.quantized_head ? ` · ${signed(record.quantized_head.difference)} from the head quantizing its input` : '';
  return `${what}${capped} = ${signed(record.value)} (the model's own) · sum of the parts ${signed(partsSum(record.parts))}${rounding}`;
}

/** The attribution table of one record, with its header, the explained value and the legend. */
export function renderAttribution(record: AttributionRecord, view: AttributionView): string {
  const { c } = view;
  const at = record.tokens[record.position];
  const header = `${c.bold(quoteToken(record.prompt))}  ${c.dim(`position ${record.position} ${at ? quoteToken(at.text) : ''} · direct logit attribution · ${record.model}`)}`;
  const explained = explainedLine(record);
  const parts = record.parts.filter((p) => !isHeadPart(p));
  const finalLayer = Math.max(...parts.map((p) => p.layer ?? 0));
  const labels = parts.map((p) => partLabel(p, finalLayer));
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const values = parts.map((p) => signed(p.value));
  const valueWidth = Math.max(...values.map((v) => v.length));
  const max = Math.max(...parts.map((p) => Math.abs(p.value)));
  const totals = new Map(runningTotals(parts).map(({ layer, total }) => [layer, total]));
  // The running total goes on each layer's last part (its MLP; the embeddings for layer 0).
  const lastOfLayer = new Map<number, number>();
  parts.forEach((p, i) => { if (p.layer !== null) lastOfLayer.set(p.layer, i); });
  const rows = parts.map((p, i) => {
    const total = p.layer !== null && lastOfLayer.get(p.layer) === i ? `  ${signed(totals.get(p.layer)!)}` : '';
    return `${padEnd(labels[i], labelWidth)}  ${values[i].padStart(valueWidth)}  ${bar(p.value, max, c)}${total}`.trimEnd();
  });
  const head = `${' '.repeat(labelWidth)}  ${'value'.padStart(valueWidth)}  ${'negative ░'.padStart(BAR_WIDTH)}│${'█ positive'.padEnd(BAR_WIDTH)}  running total`;
  const headParts = record.parts.filter((p) => p.name === 'head');
  const top = [...parts.map((p, i) => ({ label: labels[i], value: p.value })), ...headParts.map((p) => ({ label: headLabel(p, finalLayer), value: p.value }))]
    .sort((a, b) => Math.abs(b.value) - Math.abs(a.value))
    .slice(0, TOP_CONTRIBUTORS)
    .map((p) => `${p.label} ${signed(p.value)}`);
  const legend = [
    `top contributors: ${top.join(', ')}`,
    'running total: the bias plus every part up to that layer, i.e. the lens\'s logit at that layer with the final norm\'s scale frozen at the last layer\'s',
    'direct effects only: each part goes through the final norm with the scale of the real final residual',
    ...(view.defaultTarget ? ['target: the final layer\'s top-1 at this position'] : []),
  ];
  const grid = headParts.length > 0 ? ['', ...headGrid(record.parts, finalLayer, view)] : [];
  return [header, explained, '', c.dim(head), ...rows, ...grid, '', ...legend.map((l) => c.dim(l))].join('\n');
}

/** A head's label: `L01 attn head 0`. */
export function headLabel(part: Part, finalLayer: number): string {
  return `${partLabel({ ...part, name: 'attn' }, finalLayer)} head ${part.head}`;
}

// Shades for |value| / max in the grid, so it reads without colour too.
const SHADES = [' ', '░', '▒', '▓', '█'];

/** The layers × heads grid: each head's value (and its layer's attn_bias), shaded by |value|, red/green by sign on a terminal. */
function headGrid(all: Part[], finalLayer: number, view: AttributionView): string[] {
  const { c } = view;
  const heads = all.filter((p) => p.name === 'head');
  const count = Math.max(...heads.map((p) => p.head!)) + 1;
  const max = Math.max(...heads.map((p) => Math.abs(p.value)));
  const cell = (p: Part | undefined) => {
    if (!p) return ''.padStart(9);
    const shade = SHADES[max > 0 ? Math.round((Math.abs(p.value) / max) * (SHADES.length - 1)) : 0];
    const text = `${signed(p.value).padStart(7)}${shade}`;
    return ` ${view.color ? (p.value < 0 ? c.red(text) : c.green(text)) : text}`;
  };
  const layers = [...new Set(heads.map((p) => p.layer!))];
  const label = (l: number) => partLabel({ name: 'attn', layer: l, value: 0 }, finalLayer).replace(' attn', '');
  const width = label(layers[0]).length;
  const top = `${' '.repeat(width)}${Array.from({ length: count }, (_, h) => `h${h}`.padStart(9)).join('')}${'bias'.padStart(9)}`;
  const rows = layers.map((l) => `${label(l)}${Array.from({ length: count }, (_, h) => cell(heads.find((p) => p.layer === l && p.head === h))).join('')}${cell(all.find((p) => p.name === 'attn_bias' && p.layer === l))}`);
  return [c.dim(`heads: each head's direct part (z_h · W_O[h] through the frozen norm) and the output projection's bias; they add up to the layer's attn; shade: |value| against the largest head`), c.dim(top), ...rows];
}
