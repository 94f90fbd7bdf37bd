// The tuned lens by the float64 reference, shared by the tests that check lens's tuned lens:
// h + W h + b on the reference's residuals for layers 0..L−1, then its final norm and head.
import assert from 'node:assert/strict';
import { loadLensModel } from '../../src/model/runtime.js';
import { readTunedLensDir } from '../../src/tuned/lens-dir.js';
import type { ReferenceResult } from '../reference/gpt2.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';

/** The tolerance of lens's float32 tuned lens against the float64 reference. */
export const TUNED_TOL = 1e-4;
const env = cleanEnv({ LENS_CACHE: scratchDir('tuned-reference-cache') });

/** A tuned lens directory and its translators' values [L] of [W (out × in, flattened), b]. */
export interface LensValues { dir: string; layers: [number[], number[]][] }

/** The reference tuned lens at one position, [L+1][V]: unembed(norm(h + W h + b)) for layers < L, the plain head for L. */
export function referenceTuned(ref: ReferenceResult, lens: LensValues, position: number): Float64Array[] {
  return ref.residual.map((layer, l) => {
    const h = layer[position];
    if (l === ref.residual.length - 1) return ref.unembed(ref.finalNorm(h));
    const [w, b] = lens.layers[l];
    const d = h.length;
    const translated = Float64Array.from(h, (v, o) => {
      let sum = v + b[o];
      for (let i = 0; i < d; i++) sum += w[o * d + i] * h[i];
      return sum;
    });
    return ref.unembed(ref.finalNorm(translated));
  });
}

/** Runs the tuned lens at `positions` and compares every layer's logits with the reference. */
export async function assertTunedMatches(modelDir: string, lens: LensValues, ids: number[] | ((encode: (s: string) => number[]) => number[]), ref: (ids: number[]) => ReferenceResult): Promise<void> {
  const model = await loadLensModel(modelDir, { dtype: 'fp32', offline: true, env });
  try {
    const tokens = typeof ids === 'function' ? ids((s) => model.encodePrompt(s)) : ids;
    const positions = [tokens.length - 1, 0, 2];
    const { translators } = readTunedLensDir(lens.dir);
    const run = await model.run(tokens, positions, 'tuned', { translators });
    const reference = ref(tokens);
    const V = model.vocabSize, P = positions.length;
    assert.equal(run.sites.length, model.layers + 1);
    positions.forEach((position, p) => {
      const expected = referenceTuned(reference, lens, position);
      expected.forEach((logits, l) => {
        const row = l * P + p;
        assertClose(run.logits.subarray(row * V, (row + 1) * V), logits, TUNED_TOL, `tuned L${l} pos ${position}`);
      });
    });
    // The translators matter: the logit lens differs from the tuned lens below the last layer.
    const logit = await model.run(tokens, positions, 'norm');
    assert.ok(Math.abs(logit.logits[0] - run.logits[0]) > 1e-3, 'the translators change layer 0');
  } finally {
    await model.dispose();
  }
}

