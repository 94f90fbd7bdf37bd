// How a token reads on a terminal: quoted so leading spaces show, with control, bidi and
// invisible characters escaped so a token can never move the cursor or reorder the line.

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/g;

/** A token as a double-quoted string, escapes as in JSON plus \uXXXX for invisible characters. */
export function quoteToken(text: string): string {
  const body = text.replace(/["\\]/g, (c) => `\\${c}`).replace(UNSAFE, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  }).replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  return `"${body}"`;
}

/** Display width of a string in terminal columns (wide East Asian and emoji count 2; combining marks 0). */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (/\p{Mark}/u.test(ch) || cp === 0x200d || (cp >= 0xfe00 && cp <= 0xfe0f)) continue;
    width += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]|\p{Extended_Pictographic}/u.test(ch) && cp > 0xff ? 2 : 1;
  }
  return width;
}

/** Pads `text` on the right to `width` display columns. */
export function padEnd(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - displayWidth(text)));
}

/** A probability as a short percentage: "61.2%", "0.4%", or "3e-5" style below 0.1%. */
export function formatProb(p: number): string {
  if (p >= 0.9995) return '100%';
  if (p >= 0.001) return `${(p * 100).toFixed(1)}%`;
  if (p === 0) return '0';
  return p.toExponential(0);
}
