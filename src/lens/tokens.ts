// What a token's text is: the readable text of a vocabulary piece (SentencePiece or byte-level
// BPE). Data the library returns, so it lives below render/, which only shows it.

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * The text of a SentencePiece vocabulary piece: `▁` is the space; a byte-fallback piece <0xHH>
 * is its character when it is ASCII (so <0x0A> is a newline) and stays <0xHH> otherwise (one
 * byte of a longer UTF-8 character has no text of its own).
 */
export function sentencePieceText(piece: string): string {
  const byte = BYTE_PIECE.exec(piece);
  if (byte) {
    const value = parseInt(byte[1], 16);
    return value < 0x80 ? String.fromCharCode(value) : piece;
  }
  return piece.replace(/\u2581/g, ' ');
}

// Byte-level BPE (GPT-2, Qwen, Llama 3) writes each byte as one printable character: the
// printable Latin-1 bytes as themselves, the others as U+0100 onwards in byte order.
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(String.fromCharCode(printable ? b : next++), b);
  }
  return map;
})();

/**
 * The text of a byte-level BPE piece: its bytes as UTF-8, with any byte that is not part of a
 * complete character in the piece shown as <0xHH> (a lone byte of a longer character).
 * Undefined when the piece is not made of byte characters (an added token such as <|endoftext|>).
 */
export function byteLevelText(piece: string): string | undefined {
  const bytes: number[] = [];
  for (const ch of piece) {
    const b = BYTE_OF_CHAR.get(ch);
    if (b === undefined) return undefined;
    bytes.push(b);
  }
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i];
    const length = lead < 0x80 ? 1 : lead < 0xc2 ? 0 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : lead < 0xf5 ? 4 : 0;
    const seq = bytes.slice(i, i + length);
    const complete = length > 0 && seq.length === length && seq.slice(1).every((b) => (b & 0xc0) === 0x80);
    const text = complete ? new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(seq)) : '';
    if (complete && !text.includes('\ufffd')) { out += text; i += length; } else { out += `<0x${lead.toString(16).toUpperCase().padStart(2, '0')}>`; i += 1; }
  }
  return out;
}

/**
 * Whether a vocabulary is SentencePiece-style, asked through a membership test (cheap on a large
 * vocabulary): it has byte-fallback pieces or the bare `▁` piece; byte-level BPE has neither.
 */
export function isSentencePieceVocab(has: (piece: string) => boolean): boolean {
  return has('<0x0A>') || has('\u2581');
}
