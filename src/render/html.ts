// One self-contained HTML page with every prompt's views: styles and the one small script are
// inline, and nothing is fetched (no CDN, fonts or scripts from outside).
import type { AttributionRecord, Part } from '../lens/attribution.js';
import type { LensRecord, TargetEntry } from '../lens/record.js';
import { headLabel, partLabel, signed } from './attribution.js';
import { buildGrid, darkTextOn, rampColor, type Grid, type HeatBy } from './grid.js';
import { renderAttributionSvg, renderChartSvg, signedColor, targetDifference, xmlEscape, type ChartKind } from './svg.js';
import { formatProb, quoteToken } from './tokens.js';
import { siteLabel } from './view.js';

/** One view of one prompt: a record's table or chart, or a prompt's heatmap (its records, one per position). */
export type HtmlView =
  | { kind: 'topk'; record: LensRecord }
  | { kind: ChartKind; record: LensRecord }
  | { kind: 'heatmap'; records: LensRecord[]; by: HeatBy }
  | { kind: 'attribute'; record: AttributionRecord };

const esc = xmlEscape;
const rgb = (t: number) => `rgb(${rampColor(t).join(',')})`;

const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 4px;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
.meta{color:#666;margin:0 0 10px;font-size:13px}
.view{margin:10px 0 18px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
th,td{padding:3px 6px;text-align:left;white-space:pre}
th.layer{text-align:right;padding-right:8px}
td.num{text-align:right}
table.values td,table.values th,table.topk td,table.topk th{border-bottom:1px solid #eee}
table.grid td.cell{min-width:84px;height:32px;text-align:center;cursor:pointer;border:1px solid #fff;line-height:1.25}
table.grid td.cell:focus{outline:2px solid #d33;outline-offset:-2px}
table.grid thead th{text-align:center;font-weight:normal}
table.grid thead tr.tokens th{font-weight:bold}
.val{font-size:10px;opacity:.9}
.tip{display:none}
#lens-tip{position:fixed;z-index:10;background:#fff;color:#222;border:1px solid #888;border-radius:4px;padding:6px 8px;box-shadow:0 2px 8px rgba(0,0,0,.25);font-size:12px;pointer-events:none;max-width:420px}
#lens-tip[hidden]{display:none}
#lens-tip .head{font-weight:bold;margin-bottom:4px}
#lens-tip table td{padding:1px 6px}
.bar{display:flex;align-items:center;gap:8px;font-size:12px;margin-top:6px}
.bar .ramp{width:240px;height:12px;border:1px solid #555}
svg{max-width:100%;height:auto}
`;

// Hover, focus (keyboard) or tap (click) on a heatmap cell shows its hidden tip in one floating box.
const SCRIPT = `
(function () {
  var box = document.getElementById('lens-tip');
  function show(cell) {
    var tip = cell.querySelector('.tip');
    if (!tip) return;
    box.replaceChildren.apply(box, Array.prototype.map.call(tip.childNodes, function (n) { return n.cloneNode(true); }));
    box.hidden = false;
    var r = cell.getBoundingClientRect();
    var left = Math.max(4, Math.min(r.left, window.innerWidth - box.offsetWidth - 4));
    var top = r.bottom + 4;
    if (top + box.offsetHeight > window.innerHeight - 4) top = Math.max(4, r.top - box.offsetHeight - 4);
    box.style.left = left + 'px';
    box.style.top = top + 'px';
  }
  function hide() { box.hidden = true; }
  function cellOf(node) { return node && node.closest ? node.closest('td.cell') : null; }
  document.addEventListener('mouseover', function (e) { var c = cellOf(e.target); if (c) show(c); });
  // A tapped or clicked cell keeps focus and stays shown when the pointer leaves (a tap ends in a mouseout).
  function rest() { var f = cellOf(document.activeElement); if (f) show(f); else hide(); }
  document.addEventListener('mouseout', function (e) { var c = cellOf(e.target); if (c && !c.contains(e.relatedTarget)) rest(); });
  document.addEventListener('focusin', function (e) { var c = cellOf(e.target); if (c) show(c); });
  document.addEventListener('focusout', function (e) { if (!cellOf(e.relatedTarget)) hide(); });
  document.addEventListener('click', function (e) { var c = cellOf(e.target); if (c) show(c); else hide(); });
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') hide(); });
})();
`;

function meta(record: LensRecord): string {
  const at = record.tokens[record.position];
  return `position ${record.position}${at ? ` ${quoteToken(at.text)}` : ''} · lens ${record.mode} · ${record.model}`;
}

function labels(record: LensRecord): string[] {
  const last = Math.max(...record.layers.map((l) => l.layer));
  return record.layers.map((l) => siteLabel(l, last));
}

function topkView(record: LensRecord): string {
  const rows = record.layers.map((l, i) => `<tr><th class="layer">${labels(record)[i]}</th>${l.top.map((t) =>
    `<td style="background:${rgb(t.prob)};color:${darkTextOn(t.prob) ? '#000' : '#fff'}">${esc(quoteToken(t.token))} <span class="val">${esc(formatProb(t.prob))}</span></td>`).join('')}</tr>`);
  return `<p class="meta">${esc(meta(record))} · top-${record.layers[0]?.top.length ?? 0} tokens per layer</p><div class="scroll"><table class="topk">${rows.join('\n')}</table></div>`;
}

function chartView(record: LensRecord, kind: ChartKind): string {
  const names = labels(record);
  const targets = record.layers[0]?.targets ?? [];
  let head: string[];
  let cells: (i: number) => string[];
  if (kind === 'diff') {
    const { values, logprob } = targetDifference(record);
    head = [...targets.slice(0, 2).map((t) => quoteToken(t.text)), logprob ? 'log P(A) − log P(B)' : 'logit(A) − logit(B)'];
    const value = (t: TargetEntry) => (logprob ? t.logprob : t.logit);
    cells = (i) => [...record.layers[i].targets.slice(0, 2).map((t) => value(t).toFixed(3)), values[i].toFixed(3)];
  } else {
    head = targets.map((t) => quoteToken(t.text));
    cells = (i) => record.layers[i].targets.map((t) => (kind === 'prob' ? formatProb(t.prob) : String(t.rank)));
  }
  const table = `<table class="values"><tr><th></th>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>\n${record.layers.map((_, i) =>
    `<tr><th class="layer">${names[i]}</th>${cells(i).map((c) => `<td class="num">${esc(c)}</td>`).join('')}</tr>`).join('\n')}</table>`;
  return `<p class="meta">${esc(meta(record))}</p>${renderChartSvg(record, kind)}\n${table}`;
}

function tip(grid: Grid, i: number, j: number): string {
  const cell = grid.cells[i][j];
  const col = grid.columns[j];
  const top = cell.top.map((t) => `<tr><td>${esc(quoteToken(t.token))}</td><td class="num">${esc(formatProb(t.prob))}</td></tr>`).join('');
  const targets = cell.targets.map((t) => `<tr class="target"><td>target ${esc(quoteToken(t.text))}</td><td class="num">${esc(formatProb(t.prob))}</td><td class="num">rank ${t.rank}</td><td class="num">logit ${t.logit.toFixed(3)}</td></tr>`).join('');
  return `<div class="tip"><div class="head">${grid.rows[i].label} · position ${col.position} ${esc(quoteToken(col.token))}</div><table class="tip-top">${top}</table>${targets ? `<table class="tip-targets">${targets}</table>` : ''}</div>`;
}

function heatmapView(records: LensRecord[], by: HeatBy): string {
  const grid = buildGrid(records, by);
  const { scale } = grid;
  const head = `<thead><tr class="positions"><th></th>${grid.columns.map((c) => `<th>${c.position}</th>`).join('')}</tr>`
    + `<tr class="tokens"><th></th>${grid.columns.map((c) => `<th>${esc(quoteToken(c.token))}</th>`).join('')}</tr></thead>`;
  const body = grid.rows.map((r, i) => `<tr><th class="layer">${r.label}</th>${grid.cells[i].map((cell, j) =>
    `<td class="cell" tabindex="0" data-row="${r.label}" data-position="${grid.columns[j].position}" data-value="${cell.value}" style="background:${rgb(cell.t)};color:${darkTextOn(cell.t) ? '#000' : '#fff'}">`
    + `<span class="tok">${esc(quoteToken(cell.token))}</span><br><span class="val">${esc(scale.format(cell.value))}</span>${tip(grid, i, j)}</td>`).join('')}</tr>`).join('\n');
  const stops = Array.from({ length: 9 }, (_, s) => `${rgb(s / 8)} ${s * 12.5}%`).join(',');
  const what = `${scale.name}${scale.by === 'prob' ? '' : ` (${scale.unit})`}`;
  const first = records[0];
  const where = grid.columns.length === 1 ? `position ${grid.columns[0].position}` : `positions ${grid.columns[0].position}–${grid.columns[grid.columns.length - 1].position}`;
  return `<p class="meta">${where} · lens ${first.mode} · ${esc(first.model)} · top-1 token by layer and position, coloured by ${esc(what)}; hover or tap a cell for its top tokens</p>`
    + `<div class="scroll"><table class="grid" data-by="${by}">${head}<tbody>\n${body}</tbody></table></div>`
    + `<div class="bar"><span>${esc(what)}</span><span>${esc(scale.format(scale.min))}</span><span class="ramp" style="background:linear-gradient(to right,${stops})"></span><span>${esc(scale.format(scale.max))}</span></div>`;
}

// The head grid is a table of cells like the heatmap's, so the page's one script shows a hovered head's value.
function attributionView(record: AttributionRecord): string {
  const at = record.tokens[record.position];
  const meta = `position ${record.position}${at ? ` ${quoteToken(at.text)}` : ''} · direct logit attribution · ${record.model}`;
  const heads = record.parts.filter((p) => p.name === 'head');
  if (heads.length === 0) return `<p class="meta">${esc(meta)}</p>${renderAttributionSvg(record)}`;
  const finalLayer = Math.max(...record.parts.map((p) => p.layer ?? 0));
  const count = Math.max(...heads.map((p) => p.head!)) + 1;
  const max = Math.max(...heads.map((p) => Math.abs(p.value)));
  const layers = [...new Set(heads.map((p) => p.layer!))];
  const cell = (p: Part | undefined) => {
    if (!p) return '<td></td>';
    const label = p.name === 'head' ? headLabel(p, finalLayer) : partLabel(p, finalLayer);
    const t = max > 0 ? p.value / max : 0;
    return `<td class="cell" tabindex="0" data-layer="${p.layer}"${p.head !== undefined ? ` data-head="${p.head}"` : ''} data-value="${p.value}" style="background:${signedColor(t)};color:${Math.abs(t) > 0.6 ? '#fff' : '#000'}">`
      + `<span class="val">${esc(signed(p.value))}</span><div class="tip"><div class="head">${esc(label)}</div>${esc(signed(p.value))} of ${esc(signed(record.value))}</div></td>`;
  };
  const head = `<thead><tr><th></th>${Array.from({ length: count }, (_, h) => `<th>h${h}</th>`).join('')}<th>bias</th></tr></thead>`;
  const body = layers.map((l) => `<tr><th class="layer">${esc(partLabel({ name: 'attn', layer: l, value: 0 }, finalLayer).replace(' attn', ''))}</th>`
    + `${Array.from({ length: count }, (_, h) => cell(heads.find((p) => p.layer === l && p.head === h))).join('')}${cell(record.parts.find((p) => p.name === 'attn_bias' && p.layer === l))}</tr>`).join('\n');
  return `<p class="meta">${esc(meta)}</p>${renderAttributionSvg(record, { grid: false })}`
    + `<p class="meta">heads: each head's direct part (z_h · W_O[h] through the frozen norm) and the output projection's bias, adding up to the layer's attn; green adds, red takes away; hover or tap a cell for its value</p>`
    + `<div class="scroll"><table class="grid heads">${head}<tbody>\n${body}</tbody></table></div>`;
}

function promptOf(view: HtmlView): string {
  return 'records' in view ? (view.records[0]?.prompt ?? '') : view.record.prompt;
}

/**
 * The whole page for a command's views, in order; consecutive views of one prompt share its heading.
 * Throws RangeError when a view cannot be drawn (a chart without targets, a heatmap without records).
 */
export function renderHtml(command: string, views: HtmlView[]): string {
  const sections: string[] = [];
  let previous: string | undefined;
  for (const view of views) {
    const prompt = promptOf(view);
    if (prompt !== previous) {
      if (previous !== undefined) sections.push('</section>');
      sections.push(`<section class="prompt"><h2>${esc(quoteToken(prompt))}</h2>`);
      previous = prompt;
    }
    const inner = view.kind === 'heatmap' ? heatmapView(view.records, view.by)
      : view.kind === 'attribute' ? attributionView(view.record)
      : view.kind === 'topk' ? topkView(view.record) : chartView(view.record, view.kind);
    sections.push(`<div class="view ${view.kind}">${inner}</div>`);
  }
  if (previous !== undefined) sections.push('</section>');
  const model = views.map((v) => ('records' in v ? v.records[0]?.model : v.record.model)).find((m) => m !== undefined) ?? '';
  return htmlPage(`lens ${command}${previous !== undefined ? ` — ${quoteToken(promptOf(views[0]))}` : ''}`, `lens ${command}`, model, sections.join('\n'));
}

/** A self-contained page: the title, a heading, a line of metadata and the body (HTML, not escaped). */
export function htmlPage(title: string, heading: string, meta: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${esc(heading)}</h1>
<p class="meta">${esc(meta)}</p>
${body}
<div id="lens-tip" role="tooltip" hidden></div>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
