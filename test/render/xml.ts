// A small strict XML 1.0 well-formedness checker for the tests, written from the spec's grammar
// (elements, attributes, character data, references, comments, the XML declaration; no DTD).
export interface XmlElement { name: string; attrs: Record<string, string>; children: XmlElement[]; text: string }

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const INVALID_CHAR = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Parses `source` as one XML document; throws Error naming the offset of the first violation. */
export function parseXml(source: string): XmlElement {
  let i = 0;
  const fail = (why: string): never => { throw new Error(`not well-formed XML at ${i}: ${why} near ${JSON.stringify(source.slice(i, i + 40))}`); };
  const bad = INVALID_CHAR.exec(source);
  if (bad) { i = bad.index; fail('character not allowed in XML'); }
  const skipSpace = () => { while (i < source.length && /[ \t\r\n]/.test(source[i])) i++; };
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(source);
    if (!m) fail('expected a name');
    i += m![0].length;
    return m![0];
  };
  const decode = (raw: string, where: string): string => {
    if (raw.includes('<')) fail(`"<" in ${where}`);
    return raw.replace(/&([^;]*);|&/g, (whole, ref: string | undefined) => {
      if (ref === undefined) fail(`bare "&" in ${where}`);
      if (ref! in ENTITIES) return ENTITIES[ref!];
      const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(ref!);
      if (!m) fail(`unknown entity &${ref};`);
      const cp = m![1] !== undefined ? parseInt(m![1], 16) : Number(m![2]);
      const ch = String.fromCodePoint(cp);
      if (cp > 0x10ffff || INVALID_CHAR.test(ch)) fail(`reference to a forbidden character &${ref};`);
      return ch;
    });
  };
  const misc = () => {
    for (;;) {
      skipSpace();
      if (source.startsWith('<!--', i)) {
        const end = source.indexOf('-->', i + 4);
        if (end < 0 || source.slice(i + 4, end).includes('--')) fail('bad comment');
        i = end + 3;
      } else return;
    }
  };
  const element = (): XmlElement => {
    if (source[i] !== '<') fail('expected "<"');
    i++;
    const el: XmlElement = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      const before = i;
      skipSpace();
      if (source.startsWith('/>', i)) { i += 2; return el; }
      if (source[i] === '>') { i++; break; }
      if (i === before) fail('expected space before an attribute');
      const attr = name();
      skipSpace();
      if (source[i] !== '=') fail('expected "="');
      i++;
      skipSpace();
      const quote = source[i];
      if (quote !== '"' && quote !== "'") fail('expected a quoted value');
      const end = source.indexOf(quote, i + 1);
      if (end < 0) fail('unterminated attribute value');
      if (attr in el.attrs) fail(`duplicate attribute ${attr}`);
      el.attrs[attr] = decode(source.slice(i + 1, end), `attribute ${attr}`);
      i = end + 1;
    }
    for (;;) {
      const next = source.indexOf('<', i);
      if (next < 0) fail(`unclosed <${el.name}>`);
      const raw = source.slice(i, next);
      if (raw.includes(']]>')) fail('"]]>" in character data');
      el.text += decode(raw, 'character data');
      i = next;
      if (source.startsWith('</', i)) {
        i += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}>`);
        skipSpace();
        if (source[i] !== '>') fail('expected ">"');
        i++;
        return el;
      }
      if (source.startsWith('<!--', i)) { misc(); continue; }
      if (source.startsWith('<![CDATA[', i)) {
        const end = source.indexOf(']]>', i);
        if (end < 0) fail('unterminated CDATA');
        el.text += source.slice(i + 9, end);
        i = end + 3;
        continue;
      }
      if (source.startsWith('<?', i) || source.startsWith('<!', i)) fail('processing instruction or declaration inside the document');
      el.children.push(element());
    }
  };
  if (source.startsWith('\ufeff')) i = 1;
  if (source.startsWith('<?xml', i)) {
    const end = source.indexOf('?>', i);
    if (end < 0 || !/^<\?xml\s+version="1\.[0-9]+"(\s+encoding="[A-Za-z][-A-Za-z0-9._]*")?(\s+standalone="(yes|no)")?\s*\?>$/.test(source.slice(i, end + 2))) fail('bad XML declaration');
    i = end + 2;
  }
  misc();
  const root = element();
  misc();
  if (i !== source.length) fail('content after the root element');
  return root;
}

/** Every element under `root` (itself included) for which `match` holds, in document order. */
export function findAll(root: XmlElement, match: (el: XmlElement) => boolean): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (el: XmlElement) => { if (match(el)) out.push(el); el.children.forEach(walk); };
  walk(root);
  return out;
}

/** All text under an element, in document order. */
export function textOf(el: XmlElement): string {
  return el.text + el.children.map(textOf).join('');
}
