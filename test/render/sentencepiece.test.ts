import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byteLevelText, isSentencePieceVocab, sentencePieceText } from '../../src/lens/tokens.js';
import { quoteToken } from '../../src/render/tokens.js';

test('SentencePiece pieces read as text: ▁ is a space, ASCII byte pieces are their character', () => {
  assert.equal(sentencePieceText('▁The'), ' The');
  assert.equal(sentencePieceText('ing'), 'ing');
  assert.equal(sentencePieceText('▁▁'), '  ');
  assert.equal(quoteToken(sentencePieceText('<0x0A>')), '"\\n"');
  assert.equal(quoteToken(sentencePieceText('<0x09>')), '"\\t"');
  assert.equal(sentencePieceText('<0x41>'), 'A');
  // One byte of a multi-byte UTF-8 character has no text: it stays a byte token.
  assert.equal(sentencePieceText('<0xC3>'), '<0xC3>');
  assert.equal(sentencePieceText('<s>'), '<s>');
  assert.equal(sentencePieceText('<|begin_of_text|>'), '<|begin_of_text|>');
});

test('SentencePiece vocabularies are told from byte-level BPE ones', () => {
  const vocab = (pieces: string[]) => (piece: string) => pieces.includes(piece);
  assert.equal(isSentencePieceVocab(vocab(['<unk>', '<s>', '</s>', '<0x00>', '<0x0A>', '▁the'])), true);
  assert.equal(isSentencePieceVocab(vocab(['<pad>', '▁', '▁the', 'ing'])), true); // Gemma-like, by its bare ▁
  assert.equal(isSentencePieceVocab(vocab(['!', 'Ġthe', 'Ġa', 'Ċ', 'ing'])), false); // GPT-2 / Qwen / Llama 3
  assert.equal(isSentencePieceVocab(vocab([])), false);
});

test('byte-level BPE pieces read as their bytes, a lone byte of a longer character as <0xHH>', () => {
  assert.equal(byteLevelText('ĠParis'), ' Paris'); // Ġ is the space byte
  assert.equal(byteLevelText('Ċ'), '\n');
  assert.equal(byteLevelText('Ã©'), 'é'); // both bytes of é
  assert.equal(byteLevelText('Ã'), '<0xC3>'); // its first byte alone
  assert.equal(byteLevelText('Ġâ'), ' <0xE2>');
  assert.equal(byteLevelText('ð٤'), undefined); // not byte characters
  assert.equal(byteLevelText('<|endoftext|>'), '<|endoftext|>'); // ASCII reads as itself
  assert.equal(byteLevelText('æĹ¥'), '日'); // a three-byte character
  assert.equal(byteLevelText('æĹ'), '<0xE6><0x97>');
});
