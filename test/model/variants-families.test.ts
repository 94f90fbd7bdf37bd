// The dtype variants transformers.js publishes (test/fixtures/variants.ts), on the families after
// GPT-2. fp16, q4 and q4f16: every layer, in both modes, against the independent float64 reference on
// the weights as the variant stores them (test/model/stored-weights.ts), within bounds derived from the
// variant's arithmetic; every dtype's last layer against the variant's own logits (onnxruntime on the
// unrewritten file). q8 quantizes activations as it goes and is checked on its last layer only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { onnxFileFor, type Dtype } from '../../src/model/paths.js';
import { buildDecoderModel, DECODER_FORMS, headDim, tinyConfig, writeDecoderFixture, type Family } from '../fixtures/llama.js';
import { writeVariants } from '../fixtures/variants.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertVariantLayers, ownLogits } from './lens-check.js';
import { decoderAsStored, OWN_HALF_TOL, ownHalfTolerance } from './stored-weights.js';
import { halfSummedNBits } from './kernel-probes.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('variants-families-cache') });
const root = scratchDir('variants-families');
const AGAINST_REFERENCE = ['fp16', 'q4', 'q4f16'] as const;
// q8: the model quantizes the head's input with one scale for all positions, so the lens's last layer
// is the model's own logits taken as they are: equal bit for bit on any CPU (test/model/q8.test.ts
// checks the other layers against the float64 q8 reference).
// fp16 and q4f16: ownHalfTolerance (OWN_HALF_TOL, and the head's float16 sums where it has them).
const OWN: Record<string, number> = { fp16: OWN_HALF_TOL, q8: 0, q4: 1e-4, q4f16: OWN_HALF_TOL };

for (const family of ['llama', 'qwen2', 'gpt_neox'] as Family[]) {
  test(`dtype variants of ${family}: every layer the reference on the stored weights, last layer = the variant's own logits`, async (t) => {
    const dir = join(root, family);
    const weights = writeDecoderFixture(dir, tinyConfig(family), 'flat');
    writeVariants(join(dir, 'onnx'), buildDecoderModel(weights, DECODER_FORMS['flat-nocast']));
    const load = (dtype: Dtype) => loadLensModel(dir, { dtype, offline: true, env });
    const fp32 = await load('fp32');
    const ids = fp32.encodePrompt('The most famous sports in USA is');
    await fp32.dispose();
    const positions = [ids.length - 1, 2];
    const V = weights.config.vocab, L = weights.config.layers, P = positions.length;
    const halfSums = await halfSummedNBits();
    for (const dtype of Object.keys(OWN) as Dtype[]) {
      const model = await load(dtype);
      try {
        const run = await model.run(ids, positions, 'norm');
        assert.ok(run.logits.every(Number.isFinite) && run.hidden.every(Number.isFinite), `${dtype}: finite`);
        const storedDtype = AGAINST_REFERENCE.find((x) => x === dtype);
        const stored = storedDtype && decoderAsStored(weights, storedDtype);
        const ref = stored && referenceDecoderForward(stored, ids);
        if (storedDtype && stored && ref) {
          const { worst, worstRatio } = await assertVariantLayers(model, ids, positions, run.logits, ref, stored.lmHead!, storedDtype);
          t.diagnostic(`${family} ${dtype}: max |Δlogit| vs the reference ${worst.toExponential(2)}, ${worstRatio.toFixed(2)} of the bound`);
        }
        const own = await ownLogits(join(dir, onnxFileFor(dtype)), ids, [weights.config.kvHeads, headDim(weights.config)]);
        positions.forEach((pos, p) => {
          const last = (L * P + p) * V;
          const tol = (dtype === 'fp16' || dtype === 'q4f16') && stored && ref
            ? ownHalfTolerance(dtype, ref.finalNorm(ref.residual[L][pos]), stored.lmHead!, V, halfSums)
            : OWN[dtype];
          assertClose(run.logits.subarray(last, last + V), own.subarray(pos * V, (pos + 1) * V), tol, `${dtype} last layer vs own logits`);
        });
      } finally {
        await model.dispose();
      }
    }
  });
}
