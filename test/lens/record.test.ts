import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRecord, firstLayerStaying, siteStats } from '../../src/lens/record.js';
import { vectorStats } from '../../src/lens/math.js';
import { entropy, kl, logProbs, logSumExp } from '../reference/stats.js';
import { assertClose } from '../helpers.js';

// Expected values come from closed forms worked by hand and from the float64 reference
// (test/reference/stats.ts), never from src/lens/math.

const siteLogits = [Float32Array.of(0, 1, 2, 3), Float32Array.of(3, 2, 1, 0), Float32Array.of(1, 1, 5, 0)];
const sites = [{ layer: 0, site: 'block' as const }, { layer: 1, site: 'attn' as const }, { layer: 1, site: 'block' as const }];
const base = { model: 'm', mode: 'norm' as const, prompt: 'p', tokens: [], position: 0, k: 2, sites, tokenText: (id: number) => 'abcd'[id] };
const e = Math.E;

test('record: top-k, probabilities, rank, entropy and KL to the last site', () => {
  const r = buildRecord({ ...base, siteLogits, targets: [{ ids: [2], text: 'c' }] });
  // By hand: sites 0 and 1 share Z = 1 + e + e² + e³ (the same logits reversed); site 2 has Z = 1 + 2e + e⁵.
  const z01 = 1 + e + e ** 2 + e ** 3, z2 = 1 + 2 * e + e ** 5;
  // H = log Z − Σ pᵢ xᵢ.
  const h01 = Math.log(z01) - (e + 2 * e ** 2 + 3 * e ** 3) / z01;
  const h2 = Math.log(z2) - (2 * e + 5 * e ** 5) / z2;
  const pTarget = [e ** 2 / z01, e / z01, e ** 5 / z2];
  // KL(P₂ ‖ Pₗ) = Σ p₂ᵢ (x₂ᵢ − xₗᵢ) − log Z₂ + log Zₗ.
  const klTo = (x: ArrayLike<number>) => (e * (1 - x[0]) + e * (1 - x[1]) + e ** 5 * (5 - x[2]) + (0 - x[3])) / z2 - Math.log(z2) + Math.log(z01);
  const expected = [
    { entropy: h01, kl: klTo(siteLogits[0]), rank: 2 },
    { entropy: h01, kl: klTo(siteLogits[1]), rank: 3 },
    { entropy: h2, kl: 0, rank: 1 },
  ];
  r.layers.forEach((layer, l) => {
    assertClose(layer.entropy, expected[l].entropy, 1e-12, `entropy ${l}`);
    assertClose(layer.entropy, entropy(siteLogits[l]), 1e-12, `entropy ${l} vs reference`);
    assertClose(layer.kl_to_final, expected[l].kl, 1e-12, `KL ${l}`);
    assertClose(layer.kl_to_final, kl(siteLogits[2], siteLogits[l]), 1e-12, `KL ${l} vs reference`);
    assertClose(layer.targets[0].prob, pTarget[l], 1e-12, `prob ${l}`);
    assertClose(layer.targets[0].logprob, Math.log(pTarget[l]), 1e-12, `logprob ${l}`);
    assert.equal(layer.targets[0].rank, expected[l].rank);
    assert.deepEqual(layer.targets[0].pieces, [{ id: 2, text: 'c', prob: layer.targets[0].prob, logit: siteLogits[l][2], rank: expected[l].rank }]);
  });
  // The same closed forms as numbers to 4 digits: H₀ = 0.9475, KL₀ = 1.2712, KL₁ = 2.1788, P₀(c) = 0.2369.
  assertClose([r.layers[0].entropy, r.layers[0].kl_to_final, r.layers[1].kl_to_final, r.layers[0].targets[0].prob], [0.9475, 1.2712, 2.1788, 0.2369], 5e-5, 'as numbers');
  assert.deepEqual(r.layers.map((l) => [l.layer, l.site]), [[0, 'block'], [1, 'attn'], [1, 'block']]);
  assert.deepEqual(Object.keys(r.layers[0]), ['layer', 'site', 'top', 'entropy', 'kl_to_final', 'targets']);
  assert.deepEqual(Object.keys(r.layers[0].targets[0]), ['text', 'id', 'prob', 'logit', 'rank', 'logprob', 'pieces', 'first_top1', 'first_top10']);
  assert.deepEqual(r.layers[0].top.map((t) => [t.token, t.logit]), [['d', 3], ['c', 2]]);
  assertClose(r.layers[0].top.map((t) => t.prob), [e ** 3 / z01, e ** 2 / z01], 1e-12, 'top probs');
  assert.deepEqual(r.layers[2].top.map((t) => t.id), [2, 0], 'ties to the lower id');
  assert.equal(r.layers[2].kl_to_final, 0);
});

test('record: two tokens, closed forms: p = σ(a − b), H the binary entropy, KL between two coins', () => {
  // Logits [0, ln 3] give P = (1/4, 3/4); [ln 3, 0] give (3/4, 1/4); the last site [0, 0] gives (1/2, 1/2).
  const two = [Float64Array.of(0, Math.log(3)), Float64Array.of(Math.log(3), 0), Float64Array.of(0, 0)];
  const r = buildRecord({ ...base, siteLogits: two, targets: [{ ids: [1], text: 'b' }] });
  const binary = -(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75));
  // KL((½,½) ‖ (¼,¾)) = ½ ln 2 + ½ ln ⅔ = ½ ln(4/3), the same against (¾,¼).
  const coins = 0.5 * Math.log(4 / 3);
  assertClose(r.layers.map((l) => l.entropy), [binary, binary, Math.LN2], 1e-12, 'entropy');
  assertClose(r.layers.map((l) => l.kl_to_final), [coins, coins, 0], 1e-12, 'KL');
  assertClose(r.layers.map((l) => l.targets[0].prob), [0.75, 0.25, 0.5], 1e-12, 'P(b)');
  assert.deepEqual(r.layers.map((l) => l.targets[0].rank), [1, 2, 1], 'rank: a tie is not above');
});

test('record: large logits stay finite and exact: [1000, 1]', () => {
  const r = buildRecord({ ...base, sites: [sites[0], sites[2]], siteLogits: [Float64Array.of(1000, 1), Float64Array.of(1, 1000)], targets: [{ ids: [1], text: 'b' }] });
  // P(b) = 1/(1 + e⁹⁹⁹) = e^-999 to within e^-1998; H = 999 e^-999 + … underflows to 0; KL = 999 (1 − 2e^-999) ≈ 999.
  assert.ok(r.layers.every((l) => Number.isFinite(l.entropy) && Number.isFinite(l.kl_to_final)));
  assertClose(r.layers[0].targets[0].logprob, -999, 1e-9, 'log P(b)');
  assert.equal(r.layers[0].targets[0].prob, Math.exp(-999));
  assertClose(r.layers[1].targets[0].prob, 1, 1e-15, 'P(b) at the last site');
  assertClose(r.layers.map((l) => l.entropy), [0, 0], 1e-12, 'entropy');
  assertClose(r.layers[0].kl_to_final, 999, 1e-9, 'KL');
});

test('record: uniform over V: probabilities 1/V, entropy ln V, KL between two uniforms 0', () => {
  const V = 50257;
  const uniform = new Float32Array(V).fill(-2.5);
  const r = buildRecord({ ...base, sites: [sites[0], sites[2]], siteLogits: [uniform, new Float32Array(V).fill(7)], targets: [{ ids: [123], text: 'x' }] });
  for (const l of r.layers) {
    assertClose(l.entropy, Math.log(V), 1e-9, 'entropy');
    assertClose(l.targets[0].prob, 1 / V, 1e-15, 'prob');
    assertClose(l.kl_to_final, 0, 1e-9, 'KL');
    assert.equal(l.targets[0].rank, 1);
  }
  assert.deepEqual(r.layers[0].top.map((t) => t.id), [0, 1], 'ties to the lower id');
});

test('record: a several-token target is the product of its pieces, each read at its own position', () => {
  // Piece i of the target at site s is read from pieceLogits[i][s].
  const second = [Float32Array.of(2, 0, 0, 0), Float32Array.of(0, 0, 0, 9), Float32Array.of(1, 2, 3, 4)];
  const r = buildRecord({ ...base, siteLogits, targets: [{ ids: [2, 0], text: 'ca', pieceLogits: [siteLogits, second] }] });
  // By hand: P(a) in `second` is e²/(e² + 3), 1/(3 + e⁹), e/(e + e² + e³ + e⁴).
  const secondA = [e ** 2 / (e ** 2 + 3), 1 / (3 + e ** 9), e / (e + e ** 2 + e ** 3 + e ** 4)];
  r.layers.forEach((layer, s) => {
    const [t] = layer.targets;
    const lp = logProbs(siteLogits[s])[2] + Math.log(secondA[s]);
    assertClose(t.logprob, lp, 1e-12);
    assertClose(t.prob, Math.exp(lp), 1e-12);
    assert.equal(t.text, 'ca');
    assert.equal(t.id, 2);
    assert.equal(t.logit, siteLogits[s][2]);
    assert.deepEqual(t.pieces.map((p) => p.id), [2, 0]);
    assertClose(t.pieces[1].prob, secondA[s], 1e-12);
    assert.equal(t.pieces[1].logit, second[s][0]);
  });
  assert.deepEqual(r.layers.map((l) => l.targets[0].pieces[1].rank), [1, 2, 4]);
  assert.deepEqual(r.layers.map((l) => l.targets[0].rank), [2, 3, 1]);
});

test('fused statistics: top-k with ties to the lower index, log-partition, entropy and a weighted sum', () => {
  const x = Float64Array.of(1, 5, 5, -2, 3, 5);
  const s = vectorStats(x, 4, Float64Array.of(0.5, 0, 0, 0.5, 0, 0));
  assert.deepEqual(s.top, [1, 2, 5, 4]);
  assert.equal(s.max, 5);
  // By hand: Z = e + 3e⁵ + e⁻² + e³.
  const z = e + 3 * e ** 5 + e ** -2 + e ** 3;
  assertClose(s.logZ, Math.log(z), 1e-12, 'log Z');
  assertClose(s.logZ, logSumExp(x), 1e-12, 'log Z vs reference');
  assertClose(s.entropy, Math.log(z) - (e + 15 * e ** 5 - 2 * e ** -2 + 3 * e ** 3) / z, 1e-12, 'entropy');
  assertClose(s.entropy, entropy(x), 1e-12, 'entropy vs reference');
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
