import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRecord } from '../../src/lens/record.js';
import { entropy, klDivergence, logSoftmax } from '../../src/lens/math.js';
import { assertClose } from '../helpers.js';

const layerLogits = [Float32Array.of(0, 1, 2, 3), Float32Array.of(3, 2, 1, 0), Float32Array.of(1, 1, 5, 0)];
const base = { model: 'm', mode: 'norm' as const, prompt: 'p', tokens: [], position: 0, k: 2, targets: [{ id: 2, text: 'c' }], tokenText: (id: number) => 'abcd'[id] };

test('record: top-k, probabilities, rank, entropy and KL to the last layer', () => {
  const r = buildRecord({ ...base, layerLogits });
  const final = logSoftmax(layerLogits[2]);
  r.layers.forEach((layer, l) => {
    const lp = logSoftmax(layerLogits[l]);
    assertClose(layer.entropy, entropy(lp), 1e-12);
    assertClose(layer.kl_to_final, klDivergence(final, lp), 1e-12);
    assertClose(layer.targets[0].prob, Math.exp(lp[2]), 1e-12);
  });
  assert.deepEqual(r.layers[0].top.map((t) => t.token), ['d', 'c']);
  assert.deepEqual(r.layers.map((l) => l.targets[0].rank), [2, 3, 1]);
  assert.equal(r.layers[2].kl_to_final, 0);
});
