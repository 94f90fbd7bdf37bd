// The q8 check shared by the q8 tests: every lens site of a quantize_dynamic model against the
// float64 q8 reference (test/reference/q8.ts), with bounds derived from the quantization and the CPU's
// u8·s8 kernel; the last layer the model's own logits exactly.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { AttrType, DataType, type Graph } from '../../src/onnx/proto.js';
import type { LensModel } from '../../src/model/runtime.js';
import type { DecoderWeights } from '../fixtures/llama.js';
import { referenceQ8DecoderForward, type Q8Options, type Q8ReferenceResult } from '../reference/q8.js';
import { referenceLensSites, referenceSites } from '../reference/gpt2.js';
import { info, runProbe } from './kernel-probes.js';

/**
 * Whether onnxruntime's u8·s8 kernels sum exactly here, asked of onnxruntime itself. MLAS (platform.cpp)
 * picks them by CPU: with AVX-VNNI or AVX512-VNNI, vpdpbusd adds four u8·s8 products into int32; arm64's
 * kernels widen before adding. x86-64 with AVX2 or AVX512 but no VNNI uses vpmaddubsw, which adds each
 * pair of products in a saturating int16 (255·127·2 > 32767). u8·u8 (uint8 weights) widens to int16
 * first everywhere: exact. /proc/cpuinfo would not do: under an emulator (qemu-user -cpu Haswell) it
 * describes the host, not the CPU MLAS sees. So: 255 × 127 in every product of a MatMulInteger, which a
 * pair-saturating kernel sums to 32767 a pair instead of 64770.
 */
export function exactU8S8(): Promise<boolean> {
  u8s8Probe ??= (async () => {
    const M = 4, K = 64, N = 16;
    const graph: Graph = {
      name: 'u8s8_probe',
      node: [{ name: 'probe', op_type: 'MatMulInteger', input: ['a', 'b'], output: ['y'], attribute: [], domain: '' }],
      initializer: [{ name: 'b', dims: [K, N], data_type: DataType.INT8, raw_data: new Uint8Array(K * N).fill(127) }],
      input: [info('a', DataType.UINT8, [M, K])],
      output: [info('y', DataType.INT32, [M, N])],
      value_info: [],
    };
    const y = await runProbe(graph, new ort.Tensor('uint8', new Uint8Array(M * K).fill(255), [M, K]));
    return Array.from(y as Int32Array).every((v) => v === 255 * 127 * K);
  })();
  return u8s8Probe;
}
let u8s8Probe: Promise<boolean> | undefined;

/**
 * Whether onnxruntime quantizes each row of a quantize_dynamic product's input alone here, asked of
 * onnxruntime itself. On an Arm CPU with SME, onnxruntime (≥ 1.23) fuses DynamicQuantizeLinear →
 * MatMulInteger → Cast → Mul into DynamicQuantizeMatMul and, for a constant int8 weight with zero
 * point 0, runs KleidiAI's kernel, which quantizes per row (test/reference/q8.ts, smeRows); elsewhere
 * the input has one scale. So: two rows a thousand times apart in range, times an identity weight:
 * with one scale the small row's values all round to zero (its range is under half a step).
 */
export function rowwiseInt8Products(): Promise<boolean> {
  rowsProbe ??= (async () => {
    const K = 16;
    const scalar = (name: string, data_type: number, raw: Uint8Array) => ({ name, dims: [], data_type, raw_data: raw });
    const identity = new Int8Array(K * K);
    for (let k = 0; k < K; k++) identity[k * K + k] = 127;
    const graph: Graph = {
      name: 'rows_probe',
      node: [
        { name: 'quantize', op_type: 'DynamicQuantizeLinear', input: ['a'], output: ['a_q', 'a_scale', 'a_zero'], attribute: [], domain: '' },
        { name: 'product', op_type: 'MatMulInteger', input: ['a_q', 'b', 'a_zero', 'b_zero'], output: ['y_int'], attribute: [], domain: '' },
        { name: 'cast', op_type: 'Cast', input: ['y_int'], output: ['y_float'], attribute: [{ name: 'to', type: AttrType.INT, i: DataType.FLOAT }], domain: '' },
        { name: 'scales', op_type: 'Mul', input: ['a_scale', 'b_scale'], output: ['scale'], attribute: [], domain: '' },
        { name: 'rescale', op_type: 'Mul', input: ['y_float', 'scale'], output: ['y'], attribute: [], domain: '' },
      ],
      initializer: [
        { name: 'b', dims: [K, K], data_type: DataType.INT8, raw_data: new Uint8Array(identity.buffer) },
        scalar('b_zero', DataType.INT8, new Uint8Array(1)),
        scalar('b_scale', DataType.FLOAT, new Uint8Array(new Float32Array([1 / 127]).buffer)),
      ],
      input: [info('a', DataType.FLOAT, [2, K])],
      output: [info('y', DataType.FLOAT, [2, K])],
      value_info: [],
    };
    const a = Float32Array.from({ length: 2 * K }, (_, i) => (i < K ? 1000 : 1) * (((i % K) / (K - 1)) * 2 - 1));
    const y = await runProbe(graph, new ort.Tensor('float32', a, [2, K]));
    return (y as Float32Array).subarray(K).some((v) => v !== 0);
  })();
  return rowsProbe;
}
let rowsProbe: Promise<boolean> | undefined;

/**
 * Lens rows against the reference: float32 against float64 rounding, measured ≤ 1.6e-5 on these
 * logits (|logit| < 40 raw). An activation that float32 rounds to the other quantization step moves
 * a logit by scale_a · scale_w · |q_w − z_w| (about 1e-3 here): the head's share of that is added
 * per row where an input lies on a boundary (headSlack; Gemma's raw r_0 has one, 2.8e-3).
 */
export const TOL = 1e-4;

/** The float64 q8 reference of a model on the prompt, as Q8Options say it is quantized. */
export type Q8Reference = (options: Q8Options) => Q8ReferenceResult;

/** Checks every site, both modes, with and without --sublayers, against the q8 reference of the decoder `weights` (or `weights` itself, another family's reference); the last layer against `own` exactly. */
export async function assertQ8Lens(model: LensModel, ids: number[], weights: DecoderWeights | Q8Reference, own: Float32Array, options: Q8Options): Promise<string> {
  if (typeof weights === 'function') return assertQ8LensAgainst(model, ids, weights, weights(options).residual[0][0].length, own, options);
  return assertQ8LensAgainst(model, ids, (o) => referenceQ8DecoderForward(weights, ids, o), weights.config.d, own, options);
}

/** assertQ8Lens against any q8 reference (`reference` on the prompt `ids`; d the residual width). */
export async function assertQ8LensAgainst(model: LensModel, ids: number[], reference: Q8Reference, d: number, own: Float32Array, options: Q8Options): Promise<string> {
  const V = model.vocabSize;
  const positions = [ids.length - 1, 0, 3], P = positions.length;
  const layers = model.layers;
  // The exact sums; on a CPU whose u8·s8 kernel saturates, also the reference that models that kernel.
  // A value passes when it is within its bound of one of them: TOL, plus for logits what a head input
  // on a rounding boundary can move (headSlack).
  // An activation within a few float32 ulps of a rounding tie (OLMo2 has one) the float32 model may round
  // either way: the references that round such values the other way (TIE_RELATIVE) are candidates too.
  // On an Arm CPU with SME, the int8 products whose quantizer they read alone quantize each row alone
  // (rowwiseInt8Products): there the reference does so too, and nothing else.
  const saturates = options.weightType === 'int8' && !(await exactU8S8());
  const rowwise = options.weightType === 'int8' && (await rowwiseInt8Products());
  const base: [string, Q8Options] = rowwise ? ['SME rows', { ...options, smeRows: true }] : ['exact', options];
  const references: [string, Q8ReferenceResult][] = [[base[0], reference(base[1])], [`${base[0]}, near-tie flipped`, reference({ ...base[1], flipNearTies: true })]];
  if (saturates) references.push(['pair-saturating', reference({ ...options, pairSaturation: true })], ['pair-saturating, near-tie flipped', reference({ ...options, pairSaturation: true, flipNearTies: true })]);
  // The reference's own logits are the model's (checks the reference on the model itself).
  const ownSlacks = references.map(([, r]) => r.headSlack(r.residual[layers].map((v) => r.finalNorm(v))));
  positions.forEach((pos) => {
    assertNearOne(own.subarray(pos * V, (pos + 1) * V), references.map(([name, r], i) => ({ name, expected: r.ownLogits[pos], bound: TOL + ownSlacks[i][pos] })), `model's own logits vs q8 reference at ${pos}`);
  });
  let worst = 0, worstRatio = 0, largestBound = 0;
  const met = new Map<string, number>();
  for (const sublayers of model.midSites ? [false, true] : [false]) {
    const sites = references.map(([, r]) => referenceSites(r, sublayers));
    for (const mode of ['norm', 'raw'] as const) {
      const run = await model.run(ids, positions, mode, { sublayers });
      assert.equal(run.logits.length, sites[0].length * P * V);
      positions.forEach((pos, p) => {
        const expected = references.map(([, r]) => referenceLensSites(r, pos, mode === 'raw', sublayers));
        sites[0].forEach(({ site }, s) => {
          const row = s * P + p, what = `${options.weightType} ${mode} ${site.site} L${site.layer} pos ${pos}`;
          const mine = run.logits.subarray(row * V, (row + 1) * V);
          assertNearOne(run.hidden.subarray(row * d, (row + 1) * d), references.map(([name], i) => ({ name, expected: sites[i][s].at(pos), bound: TOL })), `hidden ${what}`);
          if (s === sites[0].length - 1) {
            // The last layer is the model's own output, whatever the CPU's kernels.
            assert.deepEqual(mine, own.subarray(pos * V, (pos + 1) * V), `last layer is the model's own logits: ${what}`);
            return;
          }
          // The head quantizes this row alone: an input on a rounding boundary may go either way.
          const candidates = references.map(([name, r], i) => {
            const at = sites[i][s].at(pos);
            return { name, expected: expected[i][s], bound: TOL + r.headSlack([mode === 'raw' ? at : r.finalNorm(at)])[0] };
          });
          const close = assertNearOne(mine, candidates, `lens ${what}`);
          met.set(close.name, (met.get(close.name) ?? 0) + 1);
          worst = Math.max(worst, close.diff);
          worstRatio = Math.max(worstRatio, close.diff / close.bound);
          largestBound = Math.max(largestBound, close.bound);
        });
      });
    }
  }
  // A row's lens does not depend on the rows beside it.
  const alone = await model.run(ids, [3], 'norm');
  const stacked = await model.run(ids, positions, 'norm');
  for (let l = 0; l <= model.layers; l++) {
    assert.deepEqual(alone.logits.subarray(l * V, (l + 1) * V), stacked.logits.subarray((l * P + 2) * V, (l * P + 3) * V), `layer ${l} alone vs stacked`);
  }
  const cpu = saturates ? '; this CPU saturates u8·s8 pairs' : rowwise ? '; this CPU quantizes int8 products row by row (SME)' : '';
  return `max |lens − q8 reference| ${worst.toExponential(2)}, at most ${(100 * worstRatio).toFixed(0)}% of its row's bound (bounds up to ${largestBound.toExponential(2)})${cpu}; rows met: ${[...met].map(([name, n]) => `${n} ${name}`).join(', ')}`;
}

/** Asserts `actual` lies within its bound of one of the candidate references; returns the first it meets, with the distance. */
function assertNearOne(actual: ArrayLike<number>, candidates: { name: string; expected: ArrayLike<number>; bound: number }[], what: string): { name: string; diff: number; bound: number } {
  const scored = candidates.map((c) => ({ name: c.name, bound: c.bound, diff: maxDiff(actual, c.expected) }));
  const close = scored.find((c) => c.diff <= c.bound);
  assert.ok(close, `${what}: ${scored.map((c) => `${c.diff} from the ${c.name} reference > ${c.bound}`).join(', and ')}`);
  return close;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

