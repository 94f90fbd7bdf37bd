// Tied or not: the preparation streams wte only for a head that is exactly wteᵀ, and clones
// every other head (its own weight, a bias, a copy of wte differing in one bit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../../src/model/hub.js';
import { prepareLensModel } from '../../src/model/prepare.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { buildModel, FORMS, makeWeights, VOCAB } from '../fixtures/gpt2.js';
import { cleanEnv, fixture, scratchDir, TINY } from '../helpers.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('head-cache') });

const tiedHead = async (dir: string) => (await prepareLensModel(await resolveModel(dir, { dtype: 'fp32', offline: true, env }), TINY.layers)).tiedHead;

test('every GPT-2 head form reads as tied; heads with their own weight or a bias do not', async () => {
  for (const form of Object.keys(FORMS)) {
    const expected = FORMS[form].headWeight !== 'own' && !FORMS[form].headBias;
    assert.equal(await tiedHead(fixture(form).dir), expected, `${form}: tied head`);
  }
});

test('a head stored apart from wte is tied when it is bit for bit wteᵀ, untied when one element differs by one ulp', async () => {
  const source = fixture('untied-head').dir;
  for (const [name, flip] of [['copy', false], ['one-ulp', true]] as const) {
    const weights = makeWeights(TINY);
    weights.lmHead = weights.wte.slice();
    if (flip) {
      // The last element, where a check that samples or stops early would not look.
      const bits = new Uint32Array(weights.lmHead.buffer);
      bits[VOCAB * TINY.d - 1] ^= 1;
    }
    const dir = scratchDir(`head-${name}`);
    mkdirSync(join(dir, 'onnx'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(source, f), join(dir, f));
    writeFileSync(join(dir, 'onnx', 'model.onnx'), encodeModel(buildModel(weights, FORMS['untied-head'])));
    assert.equal(await tiedHead(dir), !flip, name);
  }
});
