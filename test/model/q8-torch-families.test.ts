// q8 of the families after Llama as torch.onnx exports them and quantize_dynamic quantizes them
// (test/fixtures/torch/quantize_dynamic.py), one family per structural twist: Qwen3's q/k norms,
// Gemma 2's sandwich norms, score and final softcaps, Granite's multipliers and ÷ logits_scaling after
// the head, Cohere's parallel block and × logit_scale, Phi-3's fused
// projections, OLMo2's post-norms (its first block's projections read the embedding Gather's quantized
// output itself, no DynamicQuantizeLinear). Every site against the float64 q8 reference, the last layer
// the model's own logits (test/model/q8-check.ts); int8 weights, and uint8 for the post-head twists and OLMo2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import type { Dtype } from '../../src/model/paths.js';
import { headDim, tinyConfig, type DecoderWeights, type Family } from '../fixtures/llama.js';
import { TORCH_Q8_FILES, torchAvailable, writeTorchQ8Fixture, torchSkip } from '../fixtures/torch-export.js';
import { cleanEnv, scratchDir } from '../helpers.js';
import { ownLogits } from './lens-check.js';
import { assertQ8Lens } from './q8-check.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('q8-torch-families-cache') });
const root = scratchDir('q8-torch-families');
const missing = torchAvailable();
const skip = torchSkip();
const CASES: [Family, Dtype][] = (process.env.LENS_TEST_Q8_CASES?.split(',').map((c) => c.split(':') as [Family, Dtype])) ?? [
  ['qwen3', 'q8'], ['gemma2', 'q8'], ['granite', 'q8'], ['granite', 'uint8'], ['cohere', 'q8'], ['cohere', 'uint8'], ['phi3', 'q8'],
  ['olmo2', 'q8'], ['olmo2', 'uint8'],
];
const written = new Map<Family, DecoderWeights>();

for (const [family, dtype] of CASES) {
  const [file, weightType] = TORCH_Q8_FILES[dtype as keyof typeof TORCH_Q8_FILES];
  test(`q8 of a torch.onnx ${family}, ${dtype} (${weightType} weights): every site the q8 reference, last layer the model's own`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, family);
    if (!written.has(family)) written.set(family, writeTorchQ8Fixture(dir, tinyConfig(family)));
    const w = written.get(family)!;
    const model = await loadLensModel(dir, { dtype, offline: true, env });
    try {
      const ids = model.encodePrompt('The most famous sports in USA is');
      const own = await ownLogits(join(dir, 'onnx', file), ids, [w.config.kvHeads, headDim(w.config)]);
      t.diagnostic(`${family} ${dtype}: ${await assertQ8Lens(model, ids, w, own, { weightType })}`);
    } finally {
      await model.dispose();
    }
  });
}
