// The parity check shared by the parity tests: a lens run against a reference forward pass.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import type { LensModel } from '../../src/model/runtime.js';
import { referenceLens, referenceLensSites, referenceSites, type ReferenceResult } from '../reference/gpt2.js';
import { assertClose } from '../helpers.js';

/**
 * Runs the lens in both modes and checks every hidden state and lens row at `positions` against
 * `ref` (within tol), and the last layer against `own`, the model's own logits [T, V]; then, for
 * sequential blocks, every site with --sublayers (the residual between attention and MLP too).
 */
export async function assertLensMatches(model: LensModel, ids: number[], positions: number[], ref: ReferenceResult, own: Float32Array, d: number, tol: number): Promise<void> {
  const L = model.layers, P = positions.length, V = model.vocabSize;
  for (const mode of ['norm', 'raw'] as const) {
    const run = await model.run(ids, positions, mode);
    assert.equal(run.logits.length, (L + 1) * P * V);
    positions.forEach((pos, p) => {
      const expected = referenceLens(ref, pos, mode === 'raw');
      for (let l = 0; l <= L; l++) {
        const row = l * P + p;
        assertClose(run.hidden.subarray(row * d, (row + 1) * d), ref.residual[l][pos], tol, `${mode} hidden L${l} pos ${pos}`);
        assertClose(run.logits.subarray(row * V, (row + 1) * V), expected[l], tol, `${mode} lens L${l} pos ${pos}`);
      }
      // The last lens layer is the model's own output.
      const last = (L * P + p) * V;
      assertClose(run.logits.subarray(last, last + V), own.subarray(pos * V, (pos + 1) * V), tol, `${mode} last layer vs model logits`);
    });
  }
  // Sub-layer sites: sequential blocks have a residual between attention and MLP; parallel ones none.
  assert.equal(model.midSites, ref.mid.length === L, 'mid-block sites found exactly where the reference has them');
  if (!model.midSites) return;
  const sites = referenceSites(ref, true);
  for (const mode of ['norm', 'raw'] as const) {
    const run = await model.run(ids, positions, mode, { sublayers: true });
    assert.deepEqual(run.sites, sites.map((s) => s.site));
    assert.equal(run.logits.length, sites.length * P * V);
    positions.forEach((pos, p) => {
      const expected = referenceLensSites(ref, pos, mode === 'raw', true);
      sites.forEach(({ site, at }, s) => {
        const row = s * P + p;
        const what = `${mode} ${site.site} L${site.layer} pos ${pos}`;
        assertClose(run.hidden.subarray(row * d, (row + 1) * d), at(pos), tol, `hidden ${what}`);
        assertClose(run.logits.subarray(row * V, (row + 1) * V), expected[s], tol, `lens ${what}`);
      });
    });
  }
}

/** A model file's own logits for `ids` through onnxruntime, [T, V]; empty past of [kvHeads, headSize] per head. */
export async function ownLogits(onnxPath: string, ids: number[], [kvHeads, headSize]: [number, number]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(onnxPath);
  const T = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]),
  };
  for (const name of session.inputNames) {
    if (name.startsWith('past_key_values')) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headSize]);
    if (name === 'use_cache_branch') feeds[name] = new ort.Tensor('bool', [false], [1]);
  }
  const out = await session.run(feeds);
  await session.release();
  // The logits are the first output, whatever they are called (the scrambled-names test renames them).
  const logits = out[session.outputNames[0]];
  assert.equal(logits.dims.length, 3);
  assert.deepEqual(logits.dims.slice(0, 2), [1, T]);
  return logits.data as Float32Array;
}
