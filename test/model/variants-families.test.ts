// The dtype variants transformers.js publishes (test/fixtures/variants.ts), on the families after
// GPT-2. Quantized arithmetic has no independent reference, so the lens's last layer is checked
// against the variant's own logits (onnxruntime on the unrewritten file), and fp16 against the fp32
// lens of the same weights. How far q8/q4 move these tiny random models from fp32 measures the
// quantization, not the lens, and is not asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { onnxFileFor, type Dtype } from '../../src/model/paths.js';
import { buildDecoderModel, DECODER_FORMS, headDim, tinyConfig, writeDecoderFixture, type Family } from '../fixtures/llama.js';
import { writeVariants } from '../fixtures/variants.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { ownLogits } from './lens-check.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('variants-families-cache') });
const root = scratchDir('variants-families');
const VS_FP32: Record<string, number> = { fp16: 2e-3 };
// q8: the model quantizes the head's input with one scale for all positions, so the lens's last layer
// is the model's own logits taken as they are: equal bit for bit on any CPU (test/model/q8.test.ts
// checks the other layers against the float64 q8 reference).
const OWN: Record<string, number> = { fp16: 2e-2, q8: 0, q4: 1e-4, q4f16: 2e-2 };

function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const p = Float64Array.from(logits, (v) => Math.exp(v - max));
  const z = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / z);
}

for (const family of ['llama', 'qwen2', 'gpt_neox'] as Family[]) {
  test(`dtype variants of ${family}: last layer = the variant's own logits, fp16 close to fp32`, async () => {
    const dir = join(root, family);
    const weights = writeDecoderFixture(dir, tinyConfig(family), 'flat');
    writeVariants(join(dir, 'onnx'), buildDecoderModel(weights, DECODER_FORMS['flat-nocast']));
    const load = (dtype: Dtype) => loadLensModel(dir, { dtype, offline: true, env });
    const fp32 = await load('fp32');
    const ids = fp32.encodePrompt('The most famous sports in USA is');
    const positions = [ids.length - 1, 2];
    const base = await fp32.run(ids, positions, 'norm');
    await fp32.dispose();
    const V = weights.config.vocab, L = weights.config.layers, P = positions.length;
    for (const dtype of Object.keys(OWN) as Dtype[]) {
      const model = await load(dtype);
      try {
        const run = await model.run(ids, positions, 'norm');
        assert.ok(run.logits.every(Number.isFinite) && run.hidden.every(Number.isFinite), `${dtype}: finite`);
        if (VS_FP32[dtype] !== undefined) {
          let worst = 0;
          for (let r = 0; r < (L + 1) * P; r++) {
            const [a, b] = [softmax(run.logits.subarray(r * V, (r + 1) * V)), softmax(base.logits.subarray(r * V, (r + 1) * V))];
            for (let i = 0; i < V; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
          }
          assert.ok(worst <= VS_FP32[dtype], `${dtype}: max |Δprob| vs fp32 ${worst} > ${VS_FP32[dtype]}`);
        }
        const own = await ownLogits(join(dir, onnxFileFor(dtype)), ids, [weights.config.kvHeads, headDim(weights.config)]);
        positions.forEach((pos, p) => {
          const last = (L * P + p) * V;
          assertClose(run.logits.subarray(last, last + V), own.subarray(pos * V, (pos + 1) * V), OWN[dtype], `${dtype} last layer vs own logits`);
        });
      } finally {
        await model.dispose();
      }
    }
  });
}
