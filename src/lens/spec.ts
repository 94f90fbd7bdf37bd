// Index selections as the user writes them (`--position`, `--layers`): a single index, a comma
// list, or Python-style slices, with negatives counting from the end. Pure: no I/O.

/** One item of a selection: an index, or a slice whose missing bounds take Python's defaults. */
export type IndexItem =
  | { kind: 'index'; value: number }
  | { kind: 'slice'; start?: number; stop?: number; step?: number };

/** A parsed selection; `text` is what the user wrote, for messages. */
export interface IndexSpec { text: string; items: IndexItem[] }

/** A selection that does not fit the sequence it is applied to. */
export class IndexSpecError extends RangeError {
  /** @param index the single index out of range, or undefined when the selection is empty. */
  constructor(message: string, readonly index?: number) {
    super(message);
    this.name = 'IndexSpecError';
  }
}

const INT = '[+-]?\\d+';
const INDEX = new RegExp(`^${INT}$`);
const SLICE = new RegExp(`^(${INT})?:(${INT})?$`);
const STEPPED = new RegExp(`^(${INT})?:(${INT})?:(${INT})?$`);

function toInt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new SyntaxError(`${text} is not a usable index`);
  return n;
}

/**
 * Parses `N`, `a:b`, `a:b:s` (only with `step`), or a comma list of those; a bound may be
 * negative or left out (`-4:`, `:`). Throws SyntaxError with a one-line message.
 */
export function parseIndexSpec(text: string, options: { step: boolean }): IndexSpec {
  const parts = text.split(',').map((p) => p.trim());
  const items = parts.map((part): IndexItem => {
    if (INDEX.test(part)) return { kind: 'index', value: toInt(part)! };
    const m = SLICE.exec(part) ?? (options.step ? STEPPED.exec(part) : null);
    if (!m) {
      const forms = options.step ? 'N, a:b, a:b:step or a comma list' : 'N, a:b or a comma list';
      throw new SyntaxError(`${JSON.stringify(part)} is not an index or slice (${forms}, e.g. -1, 0,3,-1, 2:5, -4:, :)`);
    }
    const step = toInt(m[3]);
    if (step === 0) throw new SyntaxError('a slice step cannot be zero');
    return { kind: 'slice', start: toInt(m[1]), stop: toInt(m[2]), step };
  });
  return { text, items };
}

/** Python's slice.indices: the indices a slice selects from a sequence of `length`, clipped, in slice order. */
function sliceIndices(item: { start?: number; stop?: number; step?: number }, length: number): number[] {
  const step = item.step ?? 1;
  const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  const bound = (v: number | undefined, fallback: number, lo: number, hi: number) =>
    v === undefined ? fallback : clip(v < 0 ? v + length : v, lo, hi);
  const out: number[] = [];
  if (step > 0) {
    const start = bound(item.start, 0, 0, length), stop = bound(item.stop, length, 0, length);
    for (let i = start; i < stop; i += step) out.push(i);
  } else {
    const start = bound(item.start, length - 1, -1, length - 1), stop = bound(item.stop, -1, -1, length - 1);
    for (let i = start; i > stop; i += step) out.push(i);
  }
  return out;
}

/**
 * The absolute indices [n] a selection picks from a sequence of `length`, ascending, without
 * duplicates. Throws IndexSpecError for a single index outside the sequence or an empty selection.
 */
export function resolveIndexSpec(spec: IndexSpec, length: number): number[] {
  const picked = new Set<number>();
  for (const item of spec.items) {
    if (item.kind === 'index') {
      const i = item.value < 0 ? item.value + length : item.value;
      if (i < 0 || i >= length) throw new IndexSpecError(`${item.value} is outside 0..${length - 1}`, item.value);
      picked.add(i);
    } else {
      for (const i of sliceIndices(item, length)) picked.add(i);
    }
  }
  if (picked.size === 0) throw new IndexSpecError(`${spec.text} selects nothing of ${length}`);
  return [...picked].sort((a, b) => a - b);
}

/**
 * The layers 0..finalLayer that `--layers` keeps, ascending; the final layer is always kept, and no
 * spec keeps them all. Throws IndexSpecError like resolveIndexSpec.
 */
export function selectLayers(spec: IndexSpec | undefined, finalLayer: number): number[] {
  if (!spec) return Array.from({ length: finalLayer + 1 }, (_, l) => l);
  const kept = resolveIndexSpec(spec, finalLayer + 1);
  return kept.at(-1) === finalLayer ? kept : [...kept, finalLayer];
}

/** The entries of `layers` (any object with a `layer` number, e.g. LayerRecord) whose layer is in `kept`; all when `kept` is undefined. */
export function thinLayers<T extends { layer: number }>(layers: T[], kept: readonly number[] | undefined): T[] {
  if (!kept) return layers;
  const keep = new Set(kept);
  return layers.filter((l) => keep.has(l.layer));
}
