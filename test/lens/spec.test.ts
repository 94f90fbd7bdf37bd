// Index selections: expected values are Python's list slicing on range(n), written out by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IndexSpecError, parseIndexSpec, resolveIndexSpec, selectLayers, thinLayers } from '../../src/lens/spec.js';

const pick = (text: string, n: number, step = false) => resolveIndexSpec(parseIndexSpec(text, { step }), n);

test('single indices and lists: negatives from the end, ascending, duplicates dropped', () => {
  assert.deepEqual(pick('0', 7), [0]);
  assert.deepEqual(pick('-1', 7), [6]);
  assert.deepEqual(pick('+2', 7), [2]);
  assert.deepEqual(pick('0,3,-1', 7), [0, 3, 6]);
  assert.deepEqual(pick('-1, 0, 6, 3', 7), [0, 3, 6]);
  assert.deepEqual(pick('5,1:3', 7), [1, 2, 5]);
});

test('slices clip as Python does', () => {
  assert.deepEqual(pick('-4:', 7), [3, 4, 5, 6]);
  assert.deepEqual(pick('2:5', 7), [2, 3, 4]);
  assert.deepEqual(pick(':', 7), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(pick('-100:100', 7), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(pick('-3:-1', 7), [4, 5]);
  assert.deepEqual(pick('-8:', 4), [0, 1, 2, 3]);
  assert.deepEqual(pick('::2', 7, true), [0, 2, 4, 6]);
  assert.deepEqual(pick('1:-1:3', 7, true), [1, 4]);
  assert.deepEqual(pick('::-1', 7, true), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(pick('5:1:-2', 7, true), [3, 5]);
  assert.deepEqual(pick('::-2', 7, true), [0, 2, 4, 6]);
  assert.deepEqual(pick('1::3', 4, true), [1]);
});

test('an index out of range or an empty selection is refused', () => {
  assert.throws(() => pick('7', 7), (e: unknown) => e instanceof IndexSpecError && e.index === 7);
  assert.throws(() => pick('-8', 7), (e: unknown) => e instanceof IndexSpecError && e.index === -8);
  assert.throws(() => pick('0,9', 3), (e: unknown) => e instanceof IndexSpecError && e.index === 9);
  assert.throws(() => pick('5:2', 7), (e: unknown) => e instanceof IndexSpecError && e.index === undefined);
  assert.throws(() => pick('10:', 7), IndexSpecError);
});

test('malformed selections are syntax errors', () => {
  for (const bad of ['', 'a', '1.5', '1:2:3', '1,,2', '--1', '1-2', ' : : ', '99999999999999999999']) {
    assert.throws(() => parseIndexSpec(bad, { step: false }), SyntaxError, bad);
  }
  assert.throws(() => parseIndexSpec('::0', { step: true }), /step cannot be zero/);
  assert.throws(() => parseIndexSpec('1:2:3:4', { step: true }), SyntaxError);
});

test('--layers keeps the final layer always, and thins entries of every site', () => {
  assert.deepEqual(selectLayers(undefined, 3), [0, 1, 2, 3]);
  assert.deepEqual(selectLayers(parseIndexSpec('::2', { step: true }), 12), [0, 2, 4, 6, 8, 10, 12]);
  assert.deepEqual(selectLayers(parseIndexSpec('::5', { step: true }), 12), [0, 5, 10, 12]);
  assert.deepEqual(selectLayers(parseIndexSpec('-8:', { step: true }), 12), [5, 6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(selectLayers(parseIndexSpec('0', { step: true }), 3), [0, 3]);
  const entries = [{ layer: 0, site: 'block' }, { layer: 1, site: 'attn' }, { layer: 1, site: 'block' }, { layer: 2, site: 'attn' }, { layer: 2, site: 'block' }];
  assert.deepEqual(thinLayers(entries, [1, 2]).map((e) => `${e.layer}${e.site}`), ['1attn', '1block', '2attn', '2block']);
  assert.equal(thinLayers(entries, undefined), entries);
});
