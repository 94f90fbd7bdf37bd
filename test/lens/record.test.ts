import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRecord, firstLayerStaying, siteStats } from '../../src/lens/record.js';
import { entropy, klDivergence, logSoftmax, vectorStats } from '../../src/lens/math.js';
import { assertClose } from '../helpers.js';

const siteLogits = [Float32Array.of(0, 1, 2, 3), Float32Array.of(3, 2, 1, 0), Float32Array.of(1, 1, 5, 0)];
const sites = [{ layer: 0, site: 'block' as const }, { layer: 1, site: 'attn' as const }, { layer: 1, site: 'block' as const }];
const base = { model: 'm', mode: 'norm' as const, prompt: 'p', tokens: [], position: 0, k: 2, sites, tokenText: (id: number) => 'abcd'[id] };

test('record: top-k, probabilities, rank, entropy and KL to the last site', () => {
  const r = buildRecord({ ...base, siteLogits, targets: [{ ids: [2], text: 'c' }] });
  const final = logSoftmax(siteLogits[2]);
  r.layers.forEach((layer, l) => {
    const lp = logSoftmax(siteLogits[l]);
    assertClose(layer.entropy, entropy(lp), 1e-12);
    assertClose(layer.kl_to_final, klDivergence(final, lp), 1e-12);
    assertClose(layer.targets[0].prob, Math.exp(lp[2]), 1e-12);
    assertClose(layer.targets[0].logprob, lp[2], 1e-12);
    assert.deepEqual(layer.targets[0].pieces, [{ id: 2, text: 'c', prob: layer.targets[0].prob, logit: siteLogits[l][2], rank: layer.targets[0].rank }]);
  });
  assert.deepEqual(r.layers.map((l) => [l.layer, l.site]), [[0, 'block'], [1, 'attn'], [1, 'block']]);
  assert.deepEqual(Object.keys(r.layers[0]), ['layer', 'site', 'top', 'entropy', 'kl_to_final', 'targets']);
  assert.deepEqual(Object.keys(r.layers[0].targets[0]), ['text', 'id', 'prob', 'logit', 'rank', 'logprob', 'pieces', 'first_top1', 'first_top10']);
  assert.deepEqual(r.layers[0].top.map((t) => t.token), ['d', 'c']);
  assert.deepEqual(r.layers.map((l) => l.targets[0].rank), [2, 3, 1]);
  assert.equal(r.layers[2].kl_to_final, 0);
});

test('record: a several-token target is the product of its pieces, each read at its own position', () => {
  // Piece i of the target at site s is read from pieceLogits[i][s].
  const second = [Float32Array.of(2, 0, 0, 0), Float32Array.of(0, 0, 0, 9), Float32Array.of(1, 2, 3, 4)];
  const r = buildRecord({ ...base, siteLogits, targets: [{ ids: [2, 0], text: 'ca', pieceLogits: [siteLogits, second] }] });
  r.layers.forEach((layer, s) => {
    const [t] = layer.targets;
    const lp = logSoftmax(siteLogits[s])[2] + logSoftmax(second[s])[0];
    assertClose(t.logprob, lp, 1e-12);
    assertClose(t.prob, Math.exp(lp), 1e-12);
    assert.equal(t.text, 'ca');
    assert.equal(t.id, 2);
    assert.equal(t.logit, siteLogits[s][2]);
    assert.deepEqual(t.pieces.map((p) => p.id), [2, 0]);
    assertClose(t.pieces[1].prob, Math.exp(logSoftmax(second[s])[0]), 1e-12);
  });
  assert.deepEqual(r.layers.map((l) => l.targets[0].pieces[1].rank), [1, 2, 4]);
  assert.deepEqual(r.layers.map((l) => l.targets[0].rank), [2, 3, 1]);
});

test('fused statistics: top-k with ties to the lower index, log-partition, entropy and a weighted sum', () => {
  const x = Float64Array.of(1, 5, 5, -2, 3, 5);
  const s = vectorStats(x, 4, Float64Array.of(0.5, 0, 0, 0.5, 0, 0));
  assert.deepEqual(s.top, [1, 2, 5, 4]);
  assert.equal(s.max, 5);
  const lp = logSoftmax(x);
  assertClose(s.logZ, x[0] - lp[0], 1e-12);
  assertClose(s.entropy, entropy(lp), 1e-12);
  assertClose(s.dot, 0.5 * 1 + 0.5 * -2, 1e-12);
  assert.deepEqual(vectorStats(x, 10).top, [1, 2, 5, 4, 0, 3]);
  // Large logits stay finite: the sums are shifted by the max.
  const big = vectorStats(Float64Array.of(1000, 999), 1);
  assertClose(big.logZ, 1000 + Math.log(1 + Math.exp(-1)), 1e-9);
  assert.deepEqual(siteStats([Float32Array.of(0, 1)], 1)[0].top, [1, 0], 'k ≥ 2 kept for default targets');
});

test('first_top1 / first_top10: the first layer from which the rank stays within 1 (10) through the last layer', () => {
  const ranks = (...r: number[]) => r.map((rank, layer) => ({ layer, rank }));
  // Top-1 at L1, lost at L2, back from L3: the commitment is L3, not L1.
  assert.equal(firstLayerStaying(ranks(5, 1, 2, 1, 1), 1), 3);
  assert.equal(firstLayerStaying(ranks(5, 1, 2, 1, 1), 10), 0);
  assert.equal(firstLayerStaying(ranks(1, 1, 1, 1, 4), 1), null);
  assert.equal(firstLayerStaying(ranks(11, 10, 12, 9, 4), 10), 3);
  assert.equal(firstLayerStaying(ranks(1), 1), 0);
});

test('buildRecord puts the same first_top1 / first_top10 in every layer\'s entry, from block sites only', () => {
  // Sites L0, L1a, L1, L2; logits over 3 tokens; target token 0 is top-1 at L1a (an attn site), L2 only otherwise.
  const siteLogits = [[0, 1, 2], [3, 0, 0], [0, 2, 1], [5, 0, 0]];
  const sites = [{ layer: 0, site: 'block' as const }, { layer: 1, site: 'attn' as const }, { layer: 1, site: 'block' as const }, { layer: 2, site: 'block' as const }];
  const record = buildRecord({ model: 'm', mode: 'norm', prompt: 'p', tokens: [], position: 0, sites, siteLogits, k: 2, targets: [{ text: 'a', ids: [0] }], tokenText: String });
  assert.deepEqual(record.layers.map((l) => [l.targets[0].rank, l.targets[0].first_top1, l.targets[0].first_top10]), [[3, 2, 0], [1, 2, 0], [3, 2, 0], [1, 2, 0]]);
});
