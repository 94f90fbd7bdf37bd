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
import { referenceForward, referenceLensSites, referenceLogProb, referenceSites, referenceTargetLogProb } from '../reference/gpt2.js';
import { analyze } from '../../src/commands/analyze.js';
import { parseIndexSpec } from '../../src/lens/spec.js';
import { assertClose, cleanEnv, fixture, scratchDir, TINY } from '../helpers.js';
import { assertLensMatches, ownLogits } from './lens-check.js';

const TOL = 1e-4;
const PROMPTS: [string, number[]][] = [
  ['The most famous sports in USA is', [464, 749, 5863, 5701, 287, 4916, 318]],
  ['Paris is capital of', [40313, 318, 3139, 286]],
];
const env = cleanEnv({ LENS_CACHE: scratchDir('parity-cache') });

/**
 * Every site's residual and lens logits (blocks, and the mid-block sites with --sublayers), at every
 * position of each prompt (read out of order: the graph reads them as given), in both modes, against
 * the reference; the last layer against the model's own logits.
 */
async function assertParity(dir: string, weights: Gpt2Weights): Promise<void> {
  const model: LensModel = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
  try {
    assert.equal(model.layers, TINY.layers);
    assert.equal(model.midSites, true);
    for (const [prompt, expectedIds] of PROMPTS) {
      const ids = model.encode(prompt);
      assert.deepEqual(ids, expectedIds);
      const positions = [ids.length - 1, ...ids.keys()].slice(0, ids.length);
      const own = await ownLogits(join(dir, 'onnx', 'model.onnx'), ids, [TINY.heads, TINY.d / TINY.heads]);
      await assertLensMatches(model, ids, positions, referenceForward(weights, ids), own, TINY.d, TOL);
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

const PROMPT = PROMPTS[0][0];
for (const form of Object.keys(FORMS)) {
  test(`records at every site: several-token products and logit differences match the reference: ${form}`, async () => {
    const { dir, weights } = fixture(form);
    // " footballers" is two tokens (4346, 364), " Eiffel Tower" four; " the" (262) is one.
    const targets = [{ text: ' footballers' }, { text: ' Eiffel Tower' }, { id: 262 }];
    for (const raw of [false, true]) {
      const options = {
        model: dir, dtype: 'fp32' as const, raw, positions: parseIndexSpec('-1', { step: false }), k: 3, offline: true,
        targets, sublayers: true, env, warn: () => assert.fail('no warnings'),
      };
      const records = [];
      for await (const record of analyze([PROMPT], options)) records.push(record);
      assert.equal(records.length, 1);
      const [record] = records;
      const ids = record.tokens.map((t) => t.id);
      const ref = referenceForward(weights, ids);
      const sites = referenceSites(ref, true);
      assert.deepEqual(record.layers.map((l) => ({ layer: l.layer, site: l.site })), sites.map((s) => s.site));
      const products = [[4346, 364], [412, 733, 417, 8765], [262]].map((t) => referenceTargetLogProb(weights, ids, t, raw, true));
      const lens = referenceLensSites(ref, record.position, raw, true);
      record.layers.forEach((layer, s) => {
        const what = `${raw ? 'raw' : 'norm'} ${layer.site} L${layer.layer}`;
        assert.equal(layer.targets.length, 3);
        layer.targets.forEach((t, j) => {
          assertClose(t.logprob, products[j][s], TOL, `log P(target ${j}) ${what}`);
          assertClose(t.prob, Math.exp(products[j][s]), TOL, `P(target ${j}) ${what}`);
          assertClose(t.pieces[0].prob, Math.exp(referenceLogProb(lens[s], t.id)), TOL, `first piece ${what}`);
        });
        // The logit difference `lens diff` charts, from the record.
        assertClose(layer.targets[0].logit - layer.targets[2].logit, lens[s][4346] - lens[s][262], TOL, `logit difference ${what}`);
      });
    }
  });
}
test('many positions past the logits budget are read in several forwards, each record still the reference', async () => {
  const { dir, weights } = fixture('opset14-merged');
  const sites = 2 * TINY.layers + 1;
  const options = {
    model: dir, dtype: 'fp32' as const, raw: false, positions: parseIndexSpec(':', { step: false }), k: 2, offline: true,
    targets: [{ id: 262 }], sublayers: true, env, warn: () => {}, logitsBudget: 3 * sites * VOCAB, // 3 positions per forward
  };
  const records = [];
  for await (const record of analyze([PROMPT], options)) records.push(record);
  assert.deepEqual(records.map((r) => r.position), [0, 1, 2, 3, 4, 5, 6]);
  const ref = referenceForward(weights, records[0].tokens.map((t) => t.id));
  for (const record of records) {
    const expected = referenceLensSites(ref, record.position, false, true);
    record.layers.forEach((layer, s) => {
      assertClose(layer.top.map((t) => t.logit), layer.top.map((t) => expected[s][t.id]), TOL, `top logits pos ${record.position}`);
      assertClose(layer.targets[0].logprob, referenceLogProb(expected[s], 262), TOL, `log P(" the") pos ${record.position}`);
      assert.equal(layer.top[0].id, expected[s].indexOf(Math.max(...expected[s])), `top-1 pos ${record.position}`);
    });
  }
});
