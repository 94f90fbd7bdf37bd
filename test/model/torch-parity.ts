// The parity tests of the lens on models torch.onnx.export wrote (test/fixtures/torch/), not on
// graphs written after beliefs about the exporter, shared by the parity-torch*.test files (split
// so each file stays well within the per-file timeout on a loaded machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { headDim, tinyConfig, type Family } from '../fixtures/llama.js';
import { TORCH_FORMS, torchAvailable, writeTorchFixture, torchSkip } from '../fixtures/torch-export.js';
import { SP_VOCAB } from '../fixtures/sentencepiece.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { cleanEnv, scratchDir } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';

const TOL = 1e-4;
const PROMPT = 'The most famous sports in USA is';
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-torch-cache') });
const root = scratchDir('torch-fixtures');
const missing = torchAvailable();
// Under CI a missing exporter is a failure, not a skip.
const skip = torchSkip();

/**
 * Registers a test per family × torch form: the lens against the independent float64 reference,
 * both modes, every layer, position and mid-block site, and the last layer against the model's own logits.
 */
export function torchParityTests(families: Family[]): void {
  for (const family of families) {
    for (const form of TORCH_FORMS) {
      test(`lens matches the reference on a torch.onnx export: ${family} ${form}`, { skip }, async (t) => {
        assert.equal(missing, undefined, missing);
        const dir = join(root, `${family}-${form}`);
        const weights = writeTorchFixture(dir, tinyConfig(family), form);
        const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
        try {
          const ids = model.encodePrompt(PROMPT);
          assert.deepEqual(ids.slice(0, 2), [SP_VOCAB['<s>'], SP_VOCAB['▁The']]);
          const positions = [ids.length - 1, 0, 3];
          const ref = referenceDecoderForward(weights, ids);
          const own = await ownLogits(join(dir, 'onnx', 'model.onnx'), ids, [weights.config.kvHeads, headDim(weights.config)]);
          const worst = await assertLensMatches(model, ids, positions, ref, own, weights.config.d, TOL);
          t.diagnostic(`largest difference ${worst.toExponential(2)} (bound ${TOL})`);
        } finally {
          await model.dispose();
        }
      });
    }
  }
}
