// The lens against an independent reference forward pass, on every fixture form, both modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { FORMS, VOCAB } from '../fixtures/gpt2.js';
import { referenceForward } from '../reference/gpt2.js';
import { fixture, scratchDir, TINY } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';

const TOL = 1e-4;
const PROMPT = 'The most famous sports in USA is';
const env = { ...process.env, LENS_CACHE: scratchDir('parity-cache') };

for (const form of Object.keys(FORMS)) {
  test(`lens matches the reference forward pass: ${form}`, async () => {
    const { dir, weights } = fixture(form);
    const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
    try {
      const ids = model.encode(PROMPT);
      assert.deepEqual(ids, [464, 749, 5863, 5701, 287, 4916, 318]);
      const positions = [ids.length - 1, 2];
      const ref = referenceForward(weights, ids);
      assert.equal(model.vocabSize, VOCAB);
      await assertLensMatches(model, ids, positions, ref, await ownLogits(join(dir, 'onnx', 'model.onnx'), ids, [TINY.heads, TINY.d / TINY.heads]), TINY.d, TOL);
    } finally {
      await model.dispose();
    }
  });
}
