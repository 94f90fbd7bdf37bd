// A float16 MatMulNBits where onnxruntime sums in float16 (arm64: kernel-probes.ts, halfSummedNBits):
// its outputs are those of the kernel as onnxruntime's source describes it (emulated here with a
// rounding to half after every step), and halfSumMass bounds how far such sums are from the exact ones,
// the bound the q4f16 checks give a head on such a CPU (stored-weights.ts). Where it sums in float32
// (x86), the outputs are the exact sums rounded to half once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { halfToFloat } from '../../src/onnx/proto.js';
import { normalSampler } from '../fixtures/gpt2.js';
import { floatToHalfBits } from '../fixtures/variants.js';
import { assertClose } from '../helpers.js';
import { halfMatMulNBits, halfSummedNBits, runProbe } from './kernel-probes.js';
import { HALF_ROUNDOFF, halfSumMass } from './stored-weights.js';

/** x rounded to the nearest binary16 value, ties to even (subnormals kept, overflow to ±Infinity); from float64, one rounding. */
function roundHalf(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x))), -14) - 10);
  const q = x / ulp, floor = Math.floor(q);
  const up = q - floor > 0.5 || (q - floor === 0.5 && floor % 2 !== 0);
  const rounded = (up ? floor + 1 : floor) * ulp;
  return Math.abs(rounded) > 65504 ? Math.sign(x) * Infinity : rounded;
}

// The kernel, HQ4BitGemmKernel_CompFp16 (onnxruntime mlas/lib/hqnbitgemm_kernel_neon_fp16.cpp), for
// one output from half inputs x [K] and half weights w [K]. Products of halves and their sum with a
// half are exact in float64 at these magnitudes, so each step rounds once, as the fused instruction does.
/** A column inside a full group of 8: acc = fma(x_k, w_k, acc), k in order, from 0. */
function laneKernel(x: ArrayLike<number>, w: ArrayLike<number>): number {
  let acc = 0;
  for (let k = 0; k < x.length; k++) acc = roundHalf(x[k] * w[k] + acc);
  return acc;
}
/** One of the last N mod 8 columns: rounded products summed as a tree of 8 (then 4, 2, 1 for the rest of K), each tree then added to acc. */
function tailKernel(x: ArrayLike<number>, w: ArrayLike<number>): number {
  const K = x.length, p = (k: number) => roundHalf(x[k] * w[k]);
  const pair = (k: number) => roundHalf(p(k) + p(k + 1));
  const four = (k: number) => roundHalf(pair(k) + pair(k + 2));
  let acc = 0, k = 0;
  for (; k + 8 <= K; k += 8) acc = roundHalf(roundHalf(four(k) + four(k + 4)) + acc);
  if (K & 4) { acc = roundHalf(four(k) + acc); k += 4; }
  if (K & 2) { acc = roundHalf(pair(k) + acc); k += 2; }
  if (K & 1) acc = roundHalf(p(k) + acc);
  return acc;
}

/** Seeded half values [n] of normal(0, std). */
function halves(seed: number, n: number, std: number): Float64Array {
  return Float64Array.from(normalSampler(seed)(n, std), roundHalf);
}

test('halfSumMass bounds the float16 kernel\'s sums (both column kinds) on random terms and on terms float16 drops', () => {
  const cases: { x: Float64Array; w: Float64Array; what: string }[] = [];
  for (const K of [1, 7, 32, 45, 64, 200]) {
    for (let seed = 1; seed <= 20; seed++) cases.push({ x: halves(seed, K, 1), w: halves(1000 + seed, K, 0.2), what: `random K=${K} seed ${seed}` });
  }
  // 1 then 31 quarter-ulps: the lane kernel loses every one (the halfSummedNBits probe's case).
  cases.push({ x: Float64Array.from({ length: 32 }, (_, k) => (k === 0 ? 1 : 2 ** -12)), w: new Float64Array(32).fill(1), what: '1 + 31 · 2^-12' });
  // 1, then chunks of eight 2^-15 whose trees sum exactly to 2^-12: the tail kernel loses each as it joins acc.
  cases.push({ x: Float64Array.from({ length: 200 }, (_, k) => (k === 0 ? 1 : k < 8 ? 0 : 2 ** -15)), w: new Float64Array(200).fill(1), what: '1 + 24 chunks of 2^-12' });
  // A large sum that cancels: the partial sums, not the result, set the error.
  cases.push({ x: Float64Array.from({ length: 40 }, (_, k) => roundHalf((k < 20 ? 3.3 : -3.3) + k * 1e-3)), w: new Float64Array(40).fill(roundHalf(1.1)), what: 'cancelling' });
  let tightest = Infinity;
  for (const { x, w, what } of cases) {
    const terms = Float64Array.from(x, (v, k) => v * w[k]);
    const exact = terms.reduce((s, t) => s + t, 0);
    for (const tail of [false, true]) {
      const error = Math.abs((tail ? tailKernel : laneKernel)(x, w) - exact);
      const bound = HALF_ROUNDOFF * halfSumMass(terms, tail) * (1 + 1e-3);
      assert.ok(error <= bound, `${what}, ${tail ? 'tail' : 'lane'}: error ${error} > bound ${bound}`);
      if (error > 0) tightest = Math.min(tightest, bound / error);
    }
  }
  // The probe's case: the lane kernel's error is 0.0076, against a bound of 0.016.
  const probe = Float64Array.from({ length: 32 }, (_, k) => (k === 0 ? 1 : 2 ** -12));
  assert.equal(laneKernel(probe, new Float64Array(32).fill(1)), 1);
  assert.ok(tightest < 3, `the bound is within a factor 3 of the error somewhere (tightest ${tightest.toFixed(2)})`);
});

test('onnxruntime\'s float16 MatMulNBits: the float16 kernel bit for bit where it sums in float16, else the exact sums rounded once', async (t) => {
  // 12 columns (8 in a full group, 4 in the tail), K = 45 (remainders 4 and 1), blocks of 16 (the last padded), 2 rows.
  const M = 2, K = 45, N = 12, BLOCK = 16, blocks = Math.ceil(K / BLOCK);
  const rand = normalSampler(77)(N * K + N * blocks, 1);
  const codes = Uint8Array.from({ length: N * K }, (_, i) => Math.min(15, Math.max(0, Math.round(8 + 4 * rand[i]))));
  const scales = Float64Array.from({ length: N * blocks }, (_, i) => roundHalf(0.01 + 0.05 * Math.abs(rand[N * K + i])));
  const packed = new Uint8Array(N * blocks * (BLOCK / 2)).fill(0x88);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const byte = n * blocks * (BLOCK / 2) + (k >> 1);
      packed[byte] = k % 2 ? (packed[byte] & 0x0f) | (codes[n * K + k] << 4) : (packed[byte] & 0xf0) | codes[n * K + k];
    }
  }
  // The stored weight (q − 8) · s; the float16 kernel dequantizes with fma(q, s, −round(s · 8)), one rounding.
  const scale = (n: number, k: number) => scales[n * blocks + Math.floor(k / BLOCK)];
  const weight = (n: number, k: number) => (codes[n * K + k] - 8) * scale(n, k);
  const halfWeight = (n: number, k: number) => roundHalf(codes[n * K + k] * scale(n, k) - roundHalf(8 * scale(n, k)));
  const x = halves(78, M * K, 1);
  const graph = halfMatMulNBits(M, K, N, BLOCK, packed, Uint16Array.from(scales, floatToHalfBits));
  const y = Array.from(await runProbe(graph, new ort.Tensor('float16', Uint16Array.from(x, floatToHalfBits), [M, K])) as Uint16Array, halfToFloat);
  const halfSums = await halfSummedNBits();
  let worst = 0;
  for (let m = 0; m < M; m++) {
    const row = x.subarray(m * K, (m + 1) * K);
    for (let n = 0; n < N; n++) {
      const w = Float64Array.from({ length: K }, (_, k) => weight(n, k));
      const exact = w.reduce((s, v, k) => s + v * row[k], 0);
      worst = Math.max(worst, Math.abs(y[m * N + n] - exact));
      if (halfSums) {
        const wHalf = Float64Array.from({ length: K }, (_, k) => halfWeight(n, k));
        const kernel = n < N - (N % 8) ? laneKernel(row, wHalf) : tailKernel(row, wHalf);
        assert.equal(y[m * N + n], kernel, `row ${m} column ${n}: onnxruntime vs the float16 kernel (exact ${exact})`);
      } else {
        // float32 sums (K · 2^-24 of Σ|terms| at most), then one rounding to half.
        const mass = w.reduce((s, v, k) => s + Math.abs(v * row[k]), 0);
        assertClose(y[m * N + n], exact, HALF_ROUNDOFF * Math.abs(exact) + K * 2 ** -24 * mass * 2, `row ${m} column ${n}: onnxruntime vs the exact sum`);
      }
    }
  }
  t.diagnostic(`${halfSums ? 'sums in float16' : 'sums in float32'}: max |y − exact sum| ${worst.toExponential(2)}`);
});
