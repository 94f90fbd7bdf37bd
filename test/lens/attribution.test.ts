// Direct logit attribution's arithmetic on hand-computed cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attributeWrites, beforeSoftcap, componentWrites, normScale, partsSum, runningTotals, subtractParts, withHeadWrites, type FinalHead, type PartVector } from '../../src/lens/attribution.js';
import { assertClose } from '../helpers.js';

// r_L = [2, −2, 2, −2]: mean 0, variance 4, so σ = 2 (ε = 0) for LayerNorm and rms = 2 for RMSNorm.
const finalResidual = [2, -2, 2, -2];
const writes: PartVector[] = [
  { name: 'embed', layer: 0, vector: [1, 1, 1, 1] },
  { name: 'attn', layer: 1, vector: [2, 0, 0, 0] },
  { name: 'mlp', layer: 1, vector: [-1, -3, 1, -3] }, // the three sum to r_L
];
const head = (centred: boolean): FinalHead => ({
  unembedRows: [9, 9, 9, 9, 1, 2, 3, 4], headBias: [100, 0.25], headScale: 2, gain: [1, 1, 1, 1], bias: [0.5, 0, 0, 0], epsilon: 0, centred,
});

test('LayerNorm parts: centred, divided by the final residual\'s σ, scaled by the head; the bias part is the norm\'s bias and the head\'s', () => {
  // Row 1 is W_U = [1, 2, 3, 4]. embed centres to 0; attn centres to [1.5, −.5, −.5, −.5]: W·that = −3, /σ = −1.5, ×2 = −3;
  // mlp centres to [.5, −1.5, 2.5, −1.5]: W·that = −1, /2 ×2 = −1; bias = 2·(W·β) + 0.25 = 2·0.5 + 0.25.
  const parts = attributeWrites(writes, finalResidual, head(true), 1);
  assert.deepEqual(parts.map((p) => [p.name, p.layer]), [['embed', 0], ['attn', 1], ['mlp', 1], ['bias', null]]);
  assertClose(parts.map((p) => p.value), [0, -3, -1, 1.25], 1e-12);
  // They sum to the logit itself: 2·W·LN(r_L) + 2·W·β + 0.25 = 2·(1 − 2 + 3 − 4) + 1.25.
  assertClose(parts.reduce((s, p) => s + p.value, 0), 2 * -2 + 1.25, 1e-12);
});

test('σ is the final residual\'s, not each part\'s own', () => {
  // attn = [2, 0, 0, 0] has its own σ = √0.75, which would give −3/√0.75·2 ≈ −6.93 instead of −3.
  const [, attn] = attributeWrites(writes, finalResidual, head(true), 1);
  assert.ok(Math.abs(attn.value - (-3 / Math.sqrt(0.75)) * 2) > 1);
  assertClose(normScale(finalResidual, head(true)), 2, 1e-12);
  assertClose(normScale([2, 0, 0, 0], head(true)), Math.sqrt(0.75), 1e-12);
});

test('RMSNorm parts: no centring, divided by the final residual\'s rms', () => {
  // rms(r_L) = 2; embed: W·[1,1,1,1] = 10, /2 ×2 = 10; attn: 2 → 2; mlp: −1 −6 +3 −12 = −16 → −16; RMSNorm has no bias here.
  const parts = attributeWrites(writes, finalResidual, { ...head(false), bias: [0, 0, 0, 0] }, 1);
  assertClose(parts.map((p) => p.value), [10, 2, -16, 0.25], 1e-12);
});

test('a pair is the difference part by part; running totals add the bias first', () => {
  const a = attributeWrites(writes, finalResidual, head(true), 1);
  const b = attributeWrites(writes, finalResidual, head(true), 0);
  // Row 0 is constant (9s): every centred part is 0 for it; its bias part is 2·4.5 + 100.
  assertClose(b.map((p) => p.value), [0, 0, 0, 109], 1e-12);
  assertClose(subtractParts(a, b).map((p) => p.value), [0, -3, -1, 1.25 - 109], 1e-12);
  assert.deepEqual(runningTotals(a).map((t) => [t.layer, t.total]), [[0, 1.25], [1, 1.25 - 4]]);
  assert.throws(() => subtractParts(a, b.slice(1)), RangeError);
});

test('component writes: differences of consecutive residual sites for sequential blocks, the branches for parallel ones', () => {
  // d = 2, one position, sites r0, m1, r1.
  const hidden = Float32Array.from([1, 2, 4, 8, 5, 5]);
  const sites = [{ layer: 0, site: 'block' as const }, { layer: 1, site: 'attn' as const }, { layer: 1, site: 'block' as const }];
  const sequential = componentWrites(hidden, sites, 1, 0, 2);
  assert.deepEqual(sequential.map((w) => [w.name, w.layer, Array.from(w.vector)]), [['embed', 0, [1, 2]], ['attn', 1, [3, 6]], ['mlp', 1, [1, -3]]]);
  // Parallel: sites r0, r1; branches [attn_1, mlp_1] at two positions, read at position 1.
  const parallel = componentWrites(Float32Array.from([0, 0, 1, 2, 0, 0, 9, 9]), [sites[0], sites[2]], 2, 1, 2, Float32Array.from([0, 0, 3, 4, 0, 0, 5, 6]));
  assert.deepEqual(parallel.map((w) => [w.name, w.layer, Array.from(w.vector)]), [['embed', 0, [1, 2]], ['attn', 1, [3, 4]], ['mlp', 1, [5, 6]]]);
  assert.throws(() => componentWrites(hidden, [sites[0], sites[2]], 1, 0, 2), RangeError);
});

test('head writes: z_h times its rows of W_O, then the projection\'s bias, after each attn', () => {
  // d = 2, one layer, one position, two heads of size 1: z = [2, 3], W_O = [[1, 4], [5, 1]], bias [0.5, −1].
  const heads = { inputs: Float32Array.of(2, 3), weights: Float32Array.of(1, 4, 5, 1), biases: Float32Array.of(0.5, -1), count: 2 };
  const writes: PartVector[] = [{ name: 'embed', layer: 0, vector: [0, 0] }, { name: 'attn', layer: 1, vector: [17.5, 10] }, { name: 'mlp', layer: 1, vector: [1, 1] }];
  const split = withHeadWrites(writes, heads, 1, 0, 2);
  assert.deepEqual(split.map((w) => [w.name, w.layer, w.head, Array.from(w.vector)]), [
    ['embed', 0, undefined, [0, 0]], ['attn', 1, undefined, [17.5, 10]],
    ['head', 1, 0, [2, 8]], ['head', 1, 1, [15, 3]], ['attn_bias', 1, undefined, [0.5, -1]],
    ['mlp', 1, undefined, [1, 1]],
  ]);
  // Their parts: heads and attn_bias are not counted again in the sum or the running totals.
  const parts = attributeWrites(split, [1, -1], { unembedRows: [1, 0], headBias: [0], headScale: 1, gain: [1, 1], bias: [0, 0], epsilon: 0, centred: false }, 0);
  assert.deepEqual(Object.keys(parts[2]), ['name', 'layer', 'head', 'value']);
  assertClose(partsSum(parts), 0 + 17.5 + 1, 1e-12);
  assertClose(runningTotals(parts).at(-1)!.total, 18.5, 1e-12);
  assert.throws(() => withHeadWrites(writes, { ...heads, count: 3 }, 1, 0, 2), RangeError);
});

test('the logit before a softcap c: c·atanh(logit / c)', () => {
  assertClose(beforeSoftcap(8 * Math.tanh(12 / 8), 8), 12, 1e-12);
  assert.equal(beforeSoftcap(3, undefined), 3);
});
