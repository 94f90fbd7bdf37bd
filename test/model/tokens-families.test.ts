// Tokens of a SentencePiece (byte-fallback) tokenizer as lens reads and shows them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { tinyConfig, writeDecoderFixture } from '../fixtures/llama.js';
import { SP_VOCAB } from '../fixtures/sentencepiece.js';
import { scratchDir } from '../helpers.js';

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
