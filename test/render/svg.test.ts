// SVG figures: well-formed XML (checked by an independent strict parser), every series and cell present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { niceTicks, renderChartSvg, renderHeatmapSvg, svgDocument, targetDifference } from '../../src/render/svg.js';
import { findAll, parseXml, textOf, type XmlElement } from './xml.js';
import { chartRecord, heatRecords } from './records.js';

const byClass = (root: XmlElement, cls: string) => findAll(root, (e) => (e.attrs.class ?? '').split(' ').includes(cls));
const num = (s: string | undefined) => Number(s);

test('the XML checker rejects what is not well-formed', () => {
  for (const bad of ['<a><b></a>', '<a x="1" x="2"/>', '<a>&foo;</a>', '<a>&</a>', '<a>\u0001</a>', '<a/><b/>', '<a x="<"/>', '<a x=1/>', '<a>&#1;</a>', 'text', '<a><!-- -- --></a>', '<a>]]></a>', '<?xml version="1.0"?><a></a>trailing']) {
    assert.throws(() => parseXml(bad), /not well-formed/, bad);
  }
  const ok = parseXml('<?xml version="1.0" encoding="UTF-8"?>\n<!-- c --><a x="&amp;&#x41;"><b>1 &lt; 2</b><c/></a>\n');
  assert.equal(ok.attrs.x, '&A');
  assert.equal(textOf(ok.children[0]), '1 < 2');
});

test('prob SVG: title, labelled axes, legend, one series per target carrying every layer', () => {
  const record = chartRecord();
  const doc = svgDocument(renderChartSvg(record, 'prob'));
  assert.ok(doc.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg'));
  const svg = parseXml(doc);
  assert.equal(svg.name, 'svg');
  assert.equal(svg.attrs.xmlns, 'http://www.w3.org/2000/svg');
  assert.equal(textOf(byClass(svg, 'title')[0]), '"The sport is"');
  assert.equal(textOf(byClass(svg, 'x-label')[0]), 'layer');
  assert.equal(textOf(byClass(svg, 'y-label')[0]), 'P(target)');
  const series = byClass(svg, 'series');
  assert.deepEqual(series.map((s) => s.attrs['data-series']), ['" football"', '" <b>&"']);
  series.forEach((s, j) => {
    const points = findAll(s, (e) => e.name === 'circle');
    assert.deepEqual(points.map((p) => num(p.attrs['data-value'])), record.layers.map((l) => l.targets[j].prob));
    assert.deepEqual(points.map((p) => p.attrs['data-layer']), ['L00', 'L01', 'L02']);
    assert.equal(findAll(s, (e) => e.name === 'polyline')[0].attrs.points.split(' ').length, 3);
  });
  // Higher probability is drawn higher (smaller y); layers go left to right.
  const football = findAll(series[0], (e) => e.name === 'circle');
  assert.ok(num(football[2].attrs.cy) < num(football[1].attrs.cy) && num(football[1].attrs.cy) < num(football[0].attrs.cy));
  assert.ok(num(football[0].attrs.cx) < num(football[1].attrs.cx) && num(football[1].attrs.cx) < num(football[2].attrs.cx));
  const legend = textOf(byClass(svg, 'legend')[0]);
  assert.ok(legend.includes('" football"') && legend.includes('" <b>&"'));
  const ticks = findAll(byClass(svg, 'ticks')[0], (e) => e.name === 'text').map(textOf);
  assert.ok(ticks.includes('0%') && ticks.includes('80%'), ticks.join(','));
  assert.deepEqual(ticks.slice(-3), ['0', '1', '2'], 'a number under each layer');
});

test('rank SVG: log scale with rank 1 at the top', () => {
  const svg = parseXml(svgDocument(renderChartSvg(chartRecord(), 'rank')));
  assert.equal(textOf(byClass(svg, 'y-label')[0]), 'rank (log scale, 1 = top)');
  const ticks = findAll(byClass(svg, 'ticks')[0], (e) => e.name === 'text');
  const tick = (label: string) => num(ticks.find((t) => textOf(t) === label)?.attrs.y);
  assert.ok(tick('1') < tick('10') && tick('10') < tick('100') && tick('100') < tick('1k'));
  // Equal steps per decade.
  assert.ok(Math.abs((tick('10') - tick('1')) - (tick('1k') - tick('100'))) < 0.05);
  const football = findAll(byClass(svg, 'series')[0], (e) => e.name === 'circle');
  assert.deepEqual(football.map((p) => num(p.attrs['data-value'])), [1000, 2, 1]);
  assert.ok(Math.abs(num(football[2].attrs.cy) - (tick('1') - 4)) < 0.05, 'rank 1 on the top line');
  assert.ok(Math.abs(num(football[0].attrs.cy) - (tick('1k') - 4)) < 0.05, 'rank 1000 on the 1k line');
});

test('diff SVG: one series logit(A) − logit(B) with the zero line; log-probabilities when a target is several tokens', () => {
  const svg = parseXml(svgDocument(renderChartSvg(chartRecord(), 'diff')));
  const series = byClass(svg, 'series');
  assert.equal(series.length, 1);
  assert.equal(series[0].attrs['data-series'], 'logit(" football") − logit(" <b>&")');
  assert.deepEqual(findAll(series[0], (e) => e.name === 'circle').map((p) => num(p.attrs['data-value'])), [-2.5, 0.75, 4]);
  assert.equal(byClass(svg, 'zero-line').length, 1);
  const multi = chartRecord();
  for (const l of multi.layers) Object.assign(l.targets[0], { logprob: Math.log(l.targets[0].prob) - 1, pieces: [{}, {}] });
  const d = targetDifference(multi);
  assert.equal(d.logprob, true);
  assert.deepEqual(d.values.map((v) => Math.round(v * 1e9) / 1e9), multi.layers.map((l) => Math.round((Math.log(l.targets[0].prob) - 1 - Math.log(l.targets[1].prob)) * 1e9) / 1e9));
  const multiSvg = parseXml(svgDocument(renderChartSvg(multi, 'diff')));
  assert.equal(textOf(byClass(multiSvg, 'y-label')[0]), 'log-probability difference (nats)');
  assert.throws(() => renderChartSvg({ ...multi, layers: multi.layers.map((l) => ({ ...l, targets: l.targets.slice(0, 1) })) }, 'diff'), RangeError);
});

test('chart SVG: sub-layer entries sit between layers; hostile prompts stay well-formed', () => {
  const record = chartRecord('<script>alert(1)</script> & \u0001 \ufffe ]]> "q"');
  record.layers = [record.layers[0], { ...record.layers[1], site: 'attn' } as never, { ...record.layers[1] }, record.layers[2]];
  record.layers[2] = { ...record.layers[2], layer: 1 };
  record.layers[3] = { ...record.layers[3], layer: 2 };
  const svg = parseXml(svgDocument(renderChartSvg(record, 'prob')));
  const points = findAll(byClass(svg, 'series')[0], (e) => e.name === 'circle');
  assert.deepEqual(points.map((p) => p.attrs['data-layer']), ['L00', 'L01a', 'L01', 'L02']);
  const cx = points.map((p) => num(p.attrs.cx));
  assert.ok(Math.abs(cx[1] - (cx[0] + cx[2]) / 2) < 0.05, 'L01a half-way between L00 and L01');
  assert.ok(!textOf(byClass(svg, 'title')[0]).includes('\u0001'));
});

test('heatmap SVG: every cell with its token and value, token labels on both axes, a colour bar', () => {
  const records = heatRecords('Paris is <capital> & "more"', ['Paris', ' is', ' <capital>'], [
    [[' the', 0.5, 2.5, 1.25], ['\n', 0.125, 10.5, 0.5], [' France', 1, 0, 0]],
    [[' a', 0.25, 3, 2], [' Schwarzenegger', 0.375, 1.5, 0.25], [' capital', 0.75, 0.75, 0]],
    [[' of', 0.0625, 4, 3.5], [' &', 0.875, 0.5, 1], [' of', 0.96875, 0.25, 0]],
  ]);
  for (const by of ['prob', 'entropy', 'kl'] as const) {
    const svg = parseXml(svgDocument(renderHeatmapSvg(records, by)));
    assert.equal(svg.attrs['data-by'], by);
    assert.equal(textOf(byClass(svg, 'title')[0]), '"Paris is <capital> & \\"more\\""');
    assert.equal(textOf(byClass(svg, 'x-label')[0]), 'position (input token)');
    assert.equal(textOf(byClass(svg, 'y-label')[0]), 'layer');
    const cells = byClass(svg, 'cell');
    assert.equal(cells.length, 9);
    for (const cell of cells) {
      const position = num(cell.attrs['data-position']);
      const row = Number(cell.attrs['data-row'].slice(1));
      const l = records[position].layers[row];
      const expected = by === 'prob' ? l.top[0].prob : by === 'entropy' ? l.entropy : l.kl_to_final;
      assert.equal(num(cell.attrs['data-value']), expected);
      const texts = findAll(cell, (e) => e.name === 'text').map(textOf);
      assert.equal(texts[0], JSON.stringify(l.top[0].token).length <= 12 ? JSON.stringify(l.top[0].token) : texts[0]);
      const tip = textOf(findAll(cell, (e) => e.name === 'title')[0]);
      assert.ok(tip.includes(`target " football": 1.0%, rank 12`), tip);
    }
    const columnTexts = findAll(byClass(svg, 'columns')[0], (e) => e.name === 'text').map(textOf);
    assert.deepEqual(columnTexts, ['0', '"Paris"', '1', '" is"', '2', '" <capital>"']);
    assert.deepEqual(findAll(byClass(svg, 'rows')[0], (e) => e.name === 'text').map(textOf), ['L00', 'L01', 'L02']);
    const bar = byClass(svg, 'colour-bar')[0];
    assert.ok(findAll(bar, (e) => e.name === 'rect').length > 10);
    assert.ok(byClass(bar, 'tick').length >= 2);
  }
  // Cells of the same value share a colour; the extremes differ.
  const svg = parseXml(renderHeatmapSvg(records, 'prob'));
  const fill = (row: string, pos: number) => findAll(byClass(svg, 'cell').find((c) => c.attrs['data-row'] === row && c.attrs['data-position'] === String(pos))!, (e) => e.name === 'rect')[0].attrs.fill;
  assert.notEqual(fill('L02', 0), fill('L00', 2));
});

test('nice ticks cover the range in round steps', () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 0.013, 5), [0, 0.005, 0.01, 0.015]);
  assert.deepEqual(niceTicks(-2.5, 4, 5), [-4, -2, 0, 2, 4]);
  assert.deepEqual(niceTicks(0, 0, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
});
