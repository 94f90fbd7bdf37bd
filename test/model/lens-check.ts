// The parity check shared by the parity tests: a lens run against a reference forward pass.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { halfToFloat } from '../../src/onnx/proto.js';
import type { LensModel } from '../../src/model/runtime.js';
import { referenceLens, referenceLensSites, referenceSites, type ReferenceResult } from '../reference/gpt2.js';
import type { DecoderWeights } from '../fixtures/llama.js';
import { assertClose } from '../helpers.js';
import { variantTolerance, type StoredDtype } from './stored-weights.js';
import { halfSummedNBits } from './kernel-probes.js';

/**
 * Runs the lens in both modes and checks every site's hidden state and lens row at `positions`
 * against `ref` (within tol) — the blocks, and for sequential blocks also every site with
 * --sublayers (the residual between attention and MLP) —, and the last layer against `own`, the
 * model's own logits [T, V] ([V]: the last position's only). Parallel blocks must have no mid-block site. Resolves to the largest
 * difference met (hidden states and logits).
 */
export async function assertLensMatches(model: LensModel, ids: number[], positions: number[], ref: ReferenceResult, own: Float32Array, d: number, tol: number): Promise<number> {
  const P = positions.length, V = model.vocabSize;
  let worst = 0;
  const check = (actual: Float32Array, expected: ArrayLike<number>, what: string) => {
    assertClose(actual, expected, tol, what);
    for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  };
  assert.equal(referenceSites(ref, false).length, model.layers + 1);
  assert.equal(model.midSites, ref.mid.length === model.layers, 'mid-block sites found exactly where the reference has them');
  for (const sublayers of model.midSites ? [false, true] : [false]) {
    const sites = referenceSites(ref, sublayers);
    for (const mode of ['norm', 'raw'] as const) {
      const run = await model.run(ids, positions, mode, { sublayers });
      assert.deepEqual(run.sites, sites.map((s) => s.site));
      assert.equal(run.logits.length, sites.length * P * V);
      assert.equal(run.hidden.length, sites.length * P * d);
      positions.forEach((pos, p) => {
        const expected = referenceLensSites(ref, pos, mode === 'raw', sublayers);
        sites.forEach(({ site, at }, s) => {
          const row = s * P + p;
          const what = `${mode} ${site.site} L${site.layer} pos ${pos}`;
          check(run.hidden.subarray(row * d, (row + 1) * d), at(pos), `hidden ${what}`);
          check(run.logits.subarray(row * V, (row + 1) * V), expected[s], `lens ${what}`);
        });
        // The last lens layer is the model's own output (a pruned head gives it at the last position only).
        const last = ((sites.length - 1) * P + p) * V;
        const ownRow = own.length === V ? (pos === ids.length - 1 ? own : undefined) : own.subarray(pos * V, (pos + 1) * V);
        if (ownRow) check(run.logits.subarray(last, last + V), ownRow, `${mode} last layer vs model logits, pos ${pos}`);
      });
    }
  }
  return worst;
}

/**
 * A model file's own logits for `ids` through onnxruntime, [kept, V] (kept = T unless the model computes
 * the last positions only; [V] for a head pruned to the last position); empty past of [kvHeads, headSize]
 * per head (float16 where the model takes float16), or without it every cache input (KV, conv state)
 * zeros of its declared shape with batch 1 and length 0 for the other named dims, as transformers.js
 * starts a prompt. Float16 logits come back as float.
 */
export async function ownLogits(onnxPath: string, ids: number[], kvShape?: [number, number], kept = ids.length): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnxPath);
  const T = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]),
  };
  for (const meta of session.inputMetadata) {
    const name = meta.name;
    if (name === 'use_cache_branch') feeds[name] = new ort.Tensor('bool', [false], [1]);
    if (name in feeds || !meta.isTensor) continue;
    if (kvShape && name.startsWith('past_key_values')) {
      // A float16-io model (onnxruntime-genai's q4f16) takes its cache in float16.
      const half = 'type' in meta && meta.type === 'float16';
      feeds[name] = half ? new ort.Tensor('float16', new Uint16Array(0), [1, kvShape[0], 0, kvShape[1]]) : new ort.Tensor('float32', new Float32Array(0), [1, kvShape[0], 0, kvShape[1]]);
    } else if (!kvShape) {
      const dims = meta.shape.map((dim) => (typeof dim === 'number' ? dim : dim === 'batch_size' ? 1 : 0));
      feeds[name] = new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
    }
  }
  // Families without position_ids (OPT, BLOOM) compute positions from the mask.
  for (const name of Object.keys(feeds)) if (!session.inputNames.includes(name)) delete feeds[name];
  const out = await session.run(feeds);
  await session.release();
  // The logits are the first output, whatever they are called (the scrambled-names test renames them).
  const logits = out[session.outputNames[0]];
  assert.equal(logits.dims.length, 3);
  assert.equal(logits.dims[0], 1);
  // A head pruned to the last position (onnxruntime-genai's prune_lm_head) scores that one only.
  assert.ok(logits.dims[1] === kept || logits.dims[1] === 1, `logits for ${logits.dims[1]} of ${kept} positions`);
  return logits.type === 'float16' ? Float32Array.from(logits.data as Uint16Array, halfToFloat) : logits.data as Float32Array;
}

/**
 * Checks every layer of the lens, both modes, at `positions` (the `normLogits` [(L+1)·P, V] of a norm-mode
 * run, the raw run done here) against the float64 reference `ref` run on the weights as the `dtype`
 * variant stores them (`head` [V, d] the stored head), within variantTolerance. Resolves to the largest
 * difference and its largest share of the bound.
 */
export async function assertVariantLayers(model: LensModel, ids: number[], positions: number[], normLogits: Float32Array, ref: ReferenceResult, head: Float32Array, dtype: StoredDtype): Promise<{ worst: number; worstRatio: number }> {
  const V = model.vocabSize, L = ref.residual.length - 1, P = positions.length;
  const halfSums = await halfSummedNBits();
  let worst = 0, worstRatio = 0;
  for (const mode of ['norm', 'raw'] as const) {
    const logits = mode === 'norm' ? normLogits : (await model.run(ids, positions, 'raw')).logits;
    positions.forEach((pos, p) => {
      const expected = referenceLens(ref, pos, mode === 'raw');
      for (let l = 0; l <= L; l++) {
        const h = ref.residual[l][pos];
        const tol = variantTolerance(dtype, l, mode === 'raw' && l < L ? h : ref.finalNorm(h), head, V, halfSums);
        const row = logits.subarray((l * P + p) * V, (l * P + p + 1) * V);
        for (let i = 0; i < V; i++) { const diff = Math.abs(row[i] - expected[l][i]); worst = Math.max(worst, diff); worstRatio = Math.max(worstRatio, diff / tol); }
        assertClose(row, expected[l], tol, `${dtype} ${mode} L${l} at ${pos} vs the reference on the stored weights`);
      }
    });
  }
  return { worst, worstRatio };
}
