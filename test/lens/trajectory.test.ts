import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LayerRecord, LensRecord } from '../../src/lens/record.js';
import { commitmentLayer, entropyByLayer, klToFinalByLayer, logitDiffByLayer, nextTokenCrossEntropyByLayer } from '../../src/lens/trajectory.js';
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

test('cross-entropy of the actual next token: −ln P from the targets, else the top-k, in nats', () => {
  const top = (id: number, prob: number) => ({ id, token: `t${id}`, prob, logit: 0 });
  const target = (logprob: number) => ({ text: ' b', id: 7, prob: Math.exp(logprob), logit: 0, rank: 1, logprob, pieces: [], first_top1: null, first_top10: null });
  const at = (position: number, layers: LayerRecord[]): LensRecord => ({ model: 'm', mode: 'norm', prompt: 'a b c', tokens: [{ id: 5, text: 'a' }, { id: 7, text: ' b' }, { id: 9, text: ' c' }], position, layers });
  const sites: LayerRecord[] = [
    { layer: 0, site: 'block', top: [top(3, 0.5), top(7, 0.25)], entropy: 0, kl_to_final: 0, targets: [] }, // −ln 0.25 = 2 ln 2
    { layer: 1, site: 'block', top: [top(3, 0.9)], entropy: 0, kl_to_final: 0, targets: [target(-3)] }, // the target's logprob
    { layer: 2, site: 'block', top: [top(7, 1)], entropy: 0, kl_to_final: 0, targets: [] }, // P = 1: 0 nats
  ];
  assertClose(nextTokenCrossEntropyByLayer(at(0, sites)).map((v) => v.value), [2 * Math.LN2, 3, 0], 1e-12, 'nats');
  assert.deepEqual(nextTokenCrossEntropyByLayer(at(0, sites)).map((v) => v.layer), [0, 1, 2]);
  assert.throws(() => nextTokenCrossEntropyByLayer(at(2, sites)), /last/); // no next token
  assert.throws(() => nextTokenCrossEntropyByLayer(at(1, sites)), /neither/); // ' c' (9) is nowhere
});
