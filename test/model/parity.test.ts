// The lens against an independent reference forward pass, on every fixture form, both modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { loadLensModel } from '../../src/model/runtime.js';
import { FORMS, VOCAB } from '../fixtures/gpt2.js';
import { referenceForward, referenceLensSites, referenceLogProb, referenceSites, referenceTargetLogProb } from '../reference/gpt2.js';
import { analyze } from '../../src/commands/analyze.js';
import { parseIndexSpec } from '../../src/lens/spec.js';
import { assertClose, fixture, scratchDir, TINY } from '../helpers.js';

const TOL = 1e-4;
const PROMPT = 'The most famous sports in USA is';
const env = { ...process.env, LENS_CACHE: scratchDir('parity-cache') };

/** The original (unrewritten) model's own logits for `ids`, [T, V]. */
async function ownLogits(dir: string, ids: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'));
  const T = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]),
  };
  for (const name of session.inputNames) {
    if (name.startsWith('past_key_values')) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, TINY.heads, 0, TINY.d / TINY.heads]);
    if (name === 'use_cache_branch') feeds[name] = new ort.Tensor('bool', [false], [1]);
  }
  const out = await session.run(feeds);
  await session.release();
  return out.logits.data as Float32Array;
}

for (const form of Object.keys(FORMS)) {
  test(`lens matches the reference forward pass: ${form}`, async () => {
    const { dir, weights } = fixture(form);
    const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env });
    try {
      const ids = model.encode(PROMPT);
      assert.deepEqual(ids, [464, 749, 5863, 5701, 287, 4916, 318]);
      // Every position, not in order: the graph reads them as given.
      const positions = [ids.length - 1, ...ids.keys()].slice(0, ids.length);
      const ref = referenceForward(weights, ids);
      const L = TINY.layers, P = positions.length, d = TINY.d;
      const own = await ownLogits(dir, ids);
      assert.equal(model.midSites, true);
      for (const sublayers of [false, true]) {
        const sites = referenceSites(ref, sublayers);
        for (const mode of ['norm', 'raw'] as const) {
          const run = await model.run(ids, positions, mode, { sublayers });
          assert.deepEqual(run.sites, sites.map((s) => s.site));
          assert.equal(run.logits.length, sites.length * P * VOCAB);
          positions.forEach((pos, p) => {
            const expected = referenceLensSites(ref, pos, mode === 'raw', sublayers);
            sites.forEach(({ site, at }, s) => {
              const row = s * P + p;
              const what = `${mode} ${site.site} L${site.layer} pos ${pos}`;
              assertClose(run.hidden.subarray(row * d, (row + 1) * d), at(pos), TOL, `hidden ${what}`);
              assertClose(run.logits.subarray(row * VOCAB, (row + 1) * VOCAB), expected[s], TOL, `lens ${what}`);
            });
            // The last lens layer is the model's own output.
            const last = ((sites.length - 1) * P + p) * VOCAB;
            assertClose(run.logits.subarray(last, last + VOCAB), own.subarray(pos * VOCAB, (pos + 1) * VOCAB), TOL, `${mode} last layer vs model logits`);
          });
        }
      }
      assert.equal(L + 1, referenceSites(ref, false).length);
    } finally {
      await model.dispose();
    }
  });
}

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
