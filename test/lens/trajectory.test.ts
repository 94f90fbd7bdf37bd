import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LayerRecord, LensRecord } from '../../src/lens/record.js';
import { commitmentLayer, entropyByLayer, klToFinalByLayer, logitDiffByLayer } from '../../src/lens/trajectory.js';
import { assertClose } from '../helpers.js';

/** A hand-written record: per site its entropy, KL and each target's (rank, logit). */
function record(sites: { layer: number; site?: 'block' | 'attn'; entropy: number; kl: number; targets: [number, number][] }[]): LensRecord {
  const names = [' yes', ' no'];
  const layers: LayerRecord[] = sites.map((s) => ({
    layer: s.layer, site: s.site ?? 'block', top: [], entropy: s.entropy, kl_to_final: s.kl,
    targets: s.targets.map(([rank, logit], i) => ({ text: names[i], id: 10 + i, prob: 0, logit, rank, logprob: 0, pieces: [], first_top1: null, first_top10: null })),
  }));
  return { model: 'm', mode: 'norm', prompt: 'p', tokens: [], position: 0, layers };
}

const r = record([
  { layer: 0, entropy: 5, kl: 3, targets: [[1, 2.5], [40, -1]] }, // top-1 early, then lost: not committed here
  { layer: 1, site: 'attn', entropy: 4, kl: 2.5, targets: [[7, 0.25], [2, 1]] },
  { layer: 1, entropy: 3, kl: 2, targets: [[3, 1], [1, 4]] },
  { layer: 2, entropy: 2, kl: 1, targets: [[2, 3], [1, 5]] },
  { layer: 3, entropy: 1, kl: 0, targets: [[1, 7], [2, 6.5]] },
]);

test('entropy and KL by layer follow the sites in order', () => {
  assert.deepEqual(entropyByLayer(r).map((v) => [v.layer, v.site, v.value]), [[0, 'block', 5], [1, 'attn', 4], [1, 'block', 3], [2, 'block', 2], [3, 'block', 1]]);
  assert.deepEqual(klToFinalByLayer(r).map((v) => v.value), [3, 2.5, 2, 1, 0]);
});

test('commitment: the first site from which the target stays in the top k', () => {
  assert.deepEqual(commitmentLayer(r, ' yes'), { layer: 3, site: 'block' }); // rank 1 only at the end (layer 0's 1 is lost)
  assert.deepEqual(commitmentLayer(r, ' yes', 3), { layer: 1, site: 'block' }); // ranks 3, 2, 1 from L01
  assert.deepEqual(commitmentLayer(r, 10, 7), { layer: 0, site: 'block' }); // by id: ranks 1, 7, 3, 2, 1
  assert.deepEqual(commitmentLayer(r, ' yes', 40), { layer: 0, site: 'block' });
  assert.equal(commitmentLayer(r, ' no'), undefined); // the final layer ranks it 2nd
  assert.deepEqual(commitmentLayer(r, ' no', 2), { layer: 1, site: 'attn' });
  assert.throws(() => commitmentLayer(r, ' maybe'), RangeError);
  assert.throws(() => commitmentLayer(r, ' yes', 0), RangeError);
});

test('logit difference of two targets by layer', () => {
  assertClose(logitDiffByLayer(r, ' yes', ' no').map((v) => v.value), [3.5, -0.75, -3, -2, 0.5], 1e-12, 'yes − no');
  assertClose(logitDiffByLayer(r, 11, 10).map((v) => v.value), [-3.5, 0.75, 3, 2, -0.5], 1e-12, 'no − yes by id');
});
