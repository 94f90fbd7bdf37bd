// The HTML page as text: self-contained (nothing fetched), every prompt's views, escaped input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHtml } from '../../src/render/html.js';
import { sampleViews } from './records.js';

test('HTML page: self-contained, nothing to fetch', () => {
  const html = renderHtml('heatmap', sampleViews());
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.doesNotMatch(html, /<link|<iframe|<img|<object|<embed|@import|url\(|\ssrc=|\shref=/i);
  // The only address is the SVG namespace, which is a name, not a request.
  assert.deepEqual([...new Set(html.match(/https?:\/\/[^\s"'<>)]*/g))], ['http://www.w3.org/2000/svg']);
  assert.equal(html.match(/<script/g)?.length, 1, 'the one inline script; prompts are escaped');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
});

test('HTML page: every prompt once, every view, every heatmap cell with its top-k and targets', () => {
  const html = renderHtml('heatmap', sampleViews());
  assert.equal(html.match(/<section class="prompt">/g)?.length, 2);
  assert.equal(html.match(/<h2>/g)?.length, 2);
  assert.match(html, /<div class="view heatmap">/);
  assert.match(html, /<div class="view prob"><p class="meta">[^<]*<\/p><svg /);
  assert.match(html, /<div class="view topk">/);
  const decode = (t: string) => t.replace(/&(quot|amp|lt|gt|#39);/g, (_, e: string) => ({ quot: '"', amp: '&', lt: '<', gt: '>', '#39': "'" })[e]!);
  const cells = html.split('<td class="cell" ').slice(1).map((chunk) => {
    const m = /^tabindex="0" data-row="(L\d\d)" data-position="(\d)" data-value="([^"]+)"/.exec(chunk)!;
    return [chunk, m[1], m[2], m[3], decode(chunk)];
  });
  assert.equal(cells.length, 9);
  const tips = new Map(cells.map((m) => [`${m[1]}@${m[2]}`, m[4]]));
  const tip = tips.get('L01@2')!;
  assert.ok(tip.includes('<div class="head">L01 · position 2 " capital"</div>'), tip);
  assert.ok(tip.includes('<td>" <&>"</td><td class="num">87.5%</td>'), tip);
  assert.ok(tip.includes('<td>" b"</td><td class="num">43.8%</td>'), tip);
  assert.ok(tip.includes('target " football"</td><td class="num">1.0%</td><td class="num">rank 12</td><td class="num">logit -1.000</td>'), tip);
  assert.equal(cells.find((m) => m[1] === 'L02' && m[2] === '0')![3], '1');
});
