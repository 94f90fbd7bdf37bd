// The lens against an independent reference forward pass, on every fixture form (tied, untied
// and biased heads), both modes, every position of two prompts; and on a graph with scrambled names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel, type LensModel } from '../../src/model/runtime.js';
import { decodeModel, encodeModel } from '../../src/onnx/proto.js';
import { FORMS, VOCAB, type Gpt2Weights } from '../fixtures/gpt2.js';
import { scrambleNames } from '../fixtures/scramble.js';
import { referenceForward, referenceLens } from '../reference/gpt2.js';
import { assertClose, cleanEnv, fixture, scratchDir, TINY } from '../helpers.js';
import { ownLogits } from './lens-check.js';

const TOL = 1e-4;
const PROMPTS: [string, number[]][] = [
  ['The most famous sports in USA is', [464, 749, 5863, 5701, 287, 4916, 318]],
  ['Paris is capital of', [40313, 318, 3139, 286]],
];
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-cache') });

/** Every layer's residual and lens logits, at every position of each prompt, in both modes, against the reference. */
async function assertParity(dir: string, weights: Gpt2Weights): Promise<void> {
  const model: LensModel = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
  try {
    const L = TINY.layers, d = TINY.d;
    assert.equal(model.layers, L);
    for (const [prompt, expectedIds] of PROMPTS) {
      const ids = model.encode(prompt);
      assert.deepEqual(ids, expectedIds);
      const positions = ids.map((_, i) => i);
      const P = positions.length;
      const ref = referenceForward(weights, ids);
      const own = await ownLogits(join(dir, 'onnx', 'model.onnx'), ids, [TINY.heads, TINY.d / TINY.heads]);
      for (const mode of ['norm', 'raw'] as const) {
        const run = await model.run(ids, positions, mode);
        assert.equal(run.logits.length, (L + 1) * P * VOCAB);
        assert.equal(run.hidden.length, (L + 1) * P * d);
        positions.forEach((pos, p) => {
          const expected = referenceLens(ref, pos, mode === 'raw');
          assert.equal(expected.length, L + 1);
          for (let l = 0; l <= L; l++) {
            const row = l * P + p;
            assertClose(run.hidden.subarray(row * d, (row + 1) * d), ref.residual[l][pos], TOL, `${mode} hidden L${l} pos ${pos}`);
            assertClose(run.logits.subarray(row * VOCAB, (row + 1) * VOCAB), expected[l], TOL, `${mode} lens L${l} pos ${pos}`);
          }
          // The last lens layer is the model's own output.
          const last = (L * P + p) * VOCAB;
          assertClose(run.logits.subarray(last, last + VOCAB), own.subarray(pos * VOCAB, (pos + 1) * VOCAB), TOL, `${mode} last layer vs model logits, pos ${pos}`);
        });
      }
    }
  } finally {
    await model.dispose();
  }
}

for (const form of Object.keys(FORMS)) {
  test(`lens matches the reference forward pass: ${form}`, async () => {
    const { dir, weights } = fixture(form);
    assert.equal(weights.lmHead !== undefined, FORMS[form].headWeight === 'own', 'the reference unembeds with the head the fixture has');
    assert.equal(weights.lmHeadBias !== undefined, FORMS[form].headBias === true);
    await assertParity(dir, weights);
  });
}

for (const form of ['opset17-flat', 'untied-head']) {
  test(`names do not matter: ${form} with every name scrambled matches the reference`, async () => {
    const { dir: source, weights } = fixture(form);
    const dir = scratchDir(`scrambled-${form}`);
    mkdirSync(join(dir, 'onnx'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(source, f), join(dir, f));
    const original = decodeModel(readFileSync(join(source, 'onnx', 'model.onnx')));
    const scrambled = scrambleNames(original);
    assert.ok(!scrambled.graph.node.some((n) => /lm_head|transformer|ln_f/.test([n.name, ...n.input, ...n.output].join())), 'no telling names left');
    writeFileSync(join(dir, 'onnx', 'model.onnx'), encodeModel(scrambled));
    await assertParity(dir, weights);
  });
}
