// The q8 check shared by the q8 tests: every lens site of a quantize_dynamic model against the
// float64 q8 reference (test/reference/q8.ts), with bounds derived from the quantization and the CPU's
// u8·s8 kernel; the last layer the model's own logits exactly.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { DataType, encodeModel, type Graph, type ValueInfo } from '../../src/onnx/proto.js';
import type { LensModel } from '../../src/model/runtime.js';
import type { DecoderWeights } from '../fixtures/llama.js';
import { referenceQ8DecoderForward, type Q8Options, type Q8ReferenceResult } from '../reference/q8.js';
import { referenceLensSites, referenceSites } from '../reference/gpt2.js';
import { assertClose } from '../helpers.js';

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
    const info = (name: string, type: number, dims: number[]): ValueInfo => ({ name, type: { tensor_type: { elem_type: type, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });
    const graph: Graph = {
      name: 'u8s8_probe',
      node: [{ name: 'probe', op_type: 'MatMulInteger', input: ['a', 'b'], output: ['y'], attribute: [], domain: '' }],
      initializer: [{ name: 'b', dims: [K, N], data_type: DataType.INT8, raw_data: new Uint8Array(K * N).fill(127) }],
      input: [info('a', DataType.UINT8, [M, K])],
      output: [info('y', DataType.INT32, [M, N])],
      value_info: [],
    };
    const session = await ort.InferenceSession.create(encodeModel({ ir_version: 8, opset_import: [{ domain: '', version: 14 }], graph }));
    try {
      const out = await session.run({ a: new ort.Tensor('uint8', new Uint8Array(M * K).fill(255), [M, K]) });
      return Array.from(out.y.data as Int32Array).every((v) => v === 255 * 127 * K);
    } finally {
      await session.release();
    }
  })();
  return u8s8Probe;
}
let u8s8Probe: Promise<boolean> | undefined;

/**
 * Lens rows against the reference: float32 against float64 rounding, measured ≤ 1.2e-5 on these
 * logits (|logit| < 40 raw). An activation that float32 rounds to the other quantization step moves
 * a logit by scale_a · scale_w · |q_w − z_w| (about 1e-3 here): the head's share of that is added
 * per row where an input lies on a boundary (headSlack; Gemma's raw r_0 has one, 2.8e-3).
 */
export const TOL = 1e-4;

/** The float64 q8 reference of a model on the prompt, as Q8Options say it is quantized. */
export type Q8Reference = (options: Q8Options) => Q8ReferenceResult;

/** Checks every site, both modes, with and without --sublayers, against the reference; the last layer against `own` exactly. */
export async function assertQ8Lens(model: LensModel, ids: number[], weights: DecoderWeights, own: Float32Array, options: Q8Options): Promise<string> {
  return assertQ8LensAgainst(model, ids, (o) => referenceQ8DecoderForward(weights, ids, o), weights.config.d, own, options);
}

/** assertQ8Lens against any q8 reference (`reference` on the prompt `ids`; d the residual width). */
export async function assertQ8LensAgainst(model: LensModel, ids: number[], reference: Q8Reference, d: number, own: Float32Array, options: Q8Options): Promise<string> {
  const V = model.vocabSize;
  const positions = [ids.length - 1, 0, 3], P = positions.length;
  const layers = model.layers;
  const exact = reference(options);
  // On a CPU whose u8·s8 kernel saturates, a row may differ from the exact value by at most what
  // saturation moves it in the reference that models that kernel (plus TOL).
  const saturated = options.weightType === 'int8' && !(await exactU8S8()) ? reference({ ...options, pairSaturation: true }) : undefined;
  // The reference's own logits are the model's (checks the reference on the model itself).
  const ownSlack = exact.headSlack(exact.residual[layers].map((v) => exact.finalNorm(v)));
  positions.forEach((pos) => {
    const bound = TOL + ownSlack[pos] + (saturated ? maxDiff(saturated.ownLogits[pos], exact.ownLogits[pos]) : 0);
    assertClose(own.subarray(pos * V, (pos + 1) * V), exact.ownLogits[pos], bound, `model's own logits vs q8 reference at ${pos}`);
  });
  let worst = 0, worstRatio = 0, largestBound = 0, worstSaturated = 0;
  for (const sublayers of model.midSites ? [false, true] : [false]) {
    const sites = referenceSites(exact, sublayers);
    for (const mode of ['norm', 'raw'] as const) {
      const run = await model.run(ids, positions, mode, { sublayers });
      assert.equal(run.logits.length, sites.length * P * V);
      positions.forEach((pos, p) => {
        const expected = referenceLensSites(exact, pos, mode === 'raw', sublayers);
        const other = saturated ? referenceLensSites(saturated, pos, mode === 'raw', sublayers) : undefined;
        const otherSites = saturated ? referenceSites(saturated, sublayers) : undefined;
        sites.forEach(({ site, at }, s) => {
          const row = s * P + p, what = `${options.weightType} ${mode} ${site.site} L${site.layer} pos ${pos}`;
          const mine = run.logits.subarray(row * V, (row + 1) * V);
          const hiddenBound = TOL + (otherSites ? maxDiff(otherSites[s].at(pos), at(pos)) : 0);
          assertClose(run.hidden.subarray(row * d, (row + 1) * d), at(pos), hiddenBound, `hidden ${what}`);
          if (s === sites.length - 1) {
            // The last layer is the model's own output, whatever the CPU's kernels.
            assert.deepEqual(mine, own.subarray(pos * V, (pos + 1) * V), `last layer is the model's own logits: ${what}`);
            return;
          }
          // The head quantizes this row alone: an input on a rounding boundary may go either way.
          const headInput = mode === 'raw' ? at(pos) : exact.finalNorm(at(pos));
          const bound = TOL + (other ? maxDiff(other[s], expected[s]) : 0) + exact.headSlack([headInput])[0];
          assertClose(mine, expected[s], bound, `lens ${what}`);
          worst = Math.max(worst, maxDiff(mine, expected[s]));
          worstRatio = Math.max(worstRatio, maxDiff(mine, expected[s]) / bound);
          if (other) worstSaturated = Math.max(worstSaturated, maxDiff(mine, other[s]));
          largestBound = Math.max(largestBound, bound);
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
  return `max |lens − q8 reference| ${worst.toExponential(2)}, at most ${(100 * worstRatio).toFixed(0)}% of its row's bound (bounds up to ${largestBound.toExponential(2)})${saturated ? `; this CPU saturates u8·s8 pairs: max |lens − saturating reference| ${worstSaturated.toExponential(2)}` : ''}`;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

