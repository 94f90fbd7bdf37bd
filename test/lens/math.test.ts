import { test } from 'node:test';
import assert from 'node:assert/strict';
import { entropy, fastExp, klDivergence, klFromLogits, logSoftmax, rankOf, softmax, softmaxStats, topK } from '../../src/lens/math.js';
import { entropy as referenceEntropy, kl as referenceKl, logProbs as referenceLogProbs, logSumExp as referenceLogSumExp } from '../reference/stats.js';
import { assertClose } from '../helpers.js';

test('uniform logits: probabilities 1/V and entropy ln V', () => {
  const V = 50257;
  const lp = logSoftmax(new Float32Array(V).fill(3.5));
  assertClose(Math.exp(lp[123]), 1 / V, 1e-15);
  assertClose(entropy(lp), Math.log(V), 1e-9);
});

test('large logits stay finite: [1000, 1]', () => {
  const p = softmax([1000, 1]);
  assert.ok(p.every(Number.isFinite));
  assertClose(p[0], 1, 1e-12);
  assertClose(logSoftmax([1000, 1])[1], -999, 1e-9);
  assertClose(entropy(logSoftmax([1000, 1])), 0, 1e-12);
});

test('softmax of a known vector', () => {
  const p = softmax([0, Math.log(3)]);
  assertClose(p, [0.25, 0.75], 1e-12);
});

test('KL divergence: zero for equal, known value for two coins, and not symmetric', () => {
  const a = logSoftmax([0, 0]);
  const b = logSoftmax([0, Math.log(3)]);
  assert.equal(klDivergence(a, a), 0);
  // KL([.5,.5] || [.25,.75]) = .5 ln 2 + .5 ln(2/3)
  assertClose(klDivergence(a, b), 0.5 * Math.log(2) + 0.5 * Math.log(2 / 3), 1e-12);
  assert.notEqual(klDivergence(a, b), klDivergence(b, a));
  assert.throws(() => klDivergence([0], [0, 0]), RangeError);
});

test('top-k: best first, ties to the lower id, k larger than V', () => {
  assert.deepEqual(topK([1, 5, 3, 5, -2], 3), [1, 3, 2]);
  assert.deepEqual(topK([2, 1], 5), [0, 1]);
  assert.deepEqual(topK(Float32Array.of(0, 0, 0), 2), [0, 1]);
  assert.throws(() => topK([1], 0), RangeError);
});

test('rank is 1 + the number of strictly larger logits', () => {
  const logits = [0.5, 2, 2, -1, 3];
  assert.equal(rankOf(logits, 4), 1);
  assert.equal(rankOf(logits, 1), 2);
  assert.equal(rankOf(logits, 2), 2);
  assert.equal(rankOf(logits, 3), 5);
  assert.throws(() => rankOf(logits, 5), RangeError);
});

test('rank of float32 logits counts as the plain comparison does, ties, ±0, ±∞, NaN and subnormals included', () => {
  const larger = (values: Float32Array, id: number) => values.filter((x) => x > values[id]).length;
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  // Hand-checked: −0 and +0 are equal (neither outranks the other), and so are the 2s.
  assert.deepEqual([0, 1, 2, 3].map((id) => rankOf(Float32Array.of(0, -0, 1, -0.5), id)), [2, 2, 1, 4]);
  assert.deepEqual([0, 1, 2].map((id) => rankOf(Float32Array.of(2, -1e-45, 2), id)), [1, 3, 1]);
  const specials = [0, -0, Infinity, -Infinity, NaN, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1];
  for (let trial = 0; trial < 2000; trial++) {
    const values = new Float32Array(1 + Math.floor(random() * 40)).map(() => (random() < 0.2 ? specials[Math.floor(random() * specials.length)] : (random() - 0.5) * 10 ** Math.floor(random() * 8 - 4)));
    // Rows of a larger buffer, as the lens's logits are.
    const row = new Float32Array(values.length + 3).subarray(2, 2 + values.length);
    row.set(values);
    for (let id = 0; id < values.length; id++) assert.equal(rankOf(row, id), 1 + larger(values, id), `${[...values]} at ${id}`);
  }
});

test('one-pass softmax statistics and KL agree with the float64 reference', () => {
  const rand = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 20 - 10;
  const next = rand(42);
  const a = Float32Array.from({ length: 5000 }, next);
  const b = Float32Array.from({ length: 5000 }, next);
  const sa = softmaxStats(a), sb = softmaxStats(b);
  // Expected values from test/reference/stats.ts (written apart from src/lens), not from this module.
  assertClose(sa.entropy, referenceEntropy(a), 1e-9);
  assertClose(sa.logZ, referenceLogSumExp(a), 1e-9);
  const pa = referenceLogProbs(a).map(Math.exp);
  assertClose(klFromLogits(pa, sa.entropy, b, sb.logZ), referenceKl(a, b), 1e-8);
  assertClose(klDivergence(logSoftmax(a), logSoftmax(b)), referenceKl(a, b), 1e-8);
  assertClose(entropy(logSoftmax(b)), referenceEntropy(b), 1e-9);
  // By hand: two coins (¼, ¾) and (½, ½): KL = ½ ln(4/3), and the entropy of (¼, ¾).
  const coin = [0, Math.log(3)];
  assertClose(klFromLogits([0.5, 0.5], Math.LN2, coin, Math.log(4)), 0.5 * Math.log(4 / 3), 1e-12);
  assertClose(softmaxStats(coin).entropy, -(0.25 * Math.log(0.25) + 0.75 * Math.log(0.75)), 1e-12);
  assertClose(softmaxStats([1000, 1]).entropy, 0, 1e-12);
  assertClose(softmaxStats([1000, 1]).logZ, 1000, 1e-12);
  assertClose(softmaxStats(new Float32Array(50257)).entropy, Math.log(50257), 1e-9);
});

test('fastExp agrees with Math.exp to 1e-13 relative over the range logits take, and at the edges', () => {
  for (let i = 0; i <= 200_000; i++) {
    const x = -745 + (785 * i) / 200_000 + (i % 7) * 1e-9; // −745 … 40, off the grid
    const expected = Math.exp(x);
    const got = fastExp(x);
    if (!(Math.abs(got - expected) <= 1e-13 * expected + 1e-320)) assert.fail(`fastExp(${x}) = ${got}, Math.exp = ${expected}`);
  }
  assert.equal(fastExp(0), 1);
  assert.equal(fastExp(-1000), 0);
  assert.equal(fastExp(-Infinity), 0);
  assert.ok(Number.isNaN(fastExp(NaN)));
  assertClose(fastExp(-Math.LN2), 0.5, 1e-16);
});
