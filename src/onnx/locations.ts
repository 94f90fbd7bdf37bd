// Which external-data files an ONNX file names, read from the protobuf wire format with small
// positioned reads: weights (raw_data) are skipped over, never read, so a 500 MB inline model
// is scanned in milliseconds and without holding it in memory.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

// Field numbers in onnx.proto of the messages on the way to a TensorProto's external_data.
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1, GRAPH_INITIALIZER = 5, GRAPH_SPARSE_INITIALIZER = 15;
const SPARSE_VALUES = 1, SPARSE_INDICES = 2;
const NODE_ATTRIBUTE = 5;
const ATTRIBUTE_T = 5, ATTRIBUTE_G = 6, ATTRIBUTE_TENSORS = 10, ATTRIBUTE_GRAPHS = 11;
const TENSOR_EXTERNAL_DATA = 13;
const ENTRY_KEY = 1, ENTRY_VALUE = 2;
const WINDOW = 1 << 16;

/** A file read through a small moving window. */
class WindowedFile {
  private buffer = Buffer.alloc(WINDOW);
  private start = 0;
  private end = 0;
  readonly size: number;
  constructor(private readonly fd: number) { this.size = fstatSync(fd).size; }

  byte(pos: number): number {
    if (pos < this.start || pos >= this.end) {
      if (pos >= this.size) throw new Error('truncated protobuf');
      this.start = pos;
      this.end = pos + readSync(this.fd, this.buffer, 0, WINDOW, pos);
    }
    return this.buffer[pos - this.start];
  }

  bytes(pos: number, length: number): Buffer {
    if (pos + length > this.size) throw new Error('truncated protobuf');
    const out = Buffer.alloc(length);
    readSync(this.fd, out, 0, length, pos);
    return out;
  }

  /** A varint at `pos`: its value and the position after it. */
  varint(pos: number): [number, number] {
    let value = 0, scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(pos++);
      value += (b & 0x7f) * scale;
      if (b < 0x80) return [value, pos];
      scale *= 128;
    }
    throw new Error('malformed varint');
  }
}

/** Calls `visit(field, start, end)` for each length-delimited field of the message in [start, end); skips the rest. */
function forEachField(file: WindowedFile, start: number, end: number, visit: (field: number, from: number, to: number) => void): void {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = file.varint(pos);
    const field = Math.floor(tag / 8), wire = tag % 8;
    pos = afterTag;
    if (wire === 0) pos = file.varint(pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [length, from] = file.varint(pos);
      pos = from + length;
      if (pos > end) throw new Error('truncated protobuf');
      visit(field, from, pos);
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

/**
 * The `location`s of every tensor stored as external data in an ONNX file (initializers of the
 * graph and of every subgraph, tensor attributes), in order of first appearance. Throws on a
 * file that is not a readable protobuf.
 */
export function externalDataLocations(path: string): string[] {
  const fd = openSync(path, 'r');
  const found = new Set<string>();
  try {
    const file = new WindowedFile(fd);
    const tensor = (from: number, to: number) => forEachField(file, from, to, (field, a, b) => {
      if (field !== TENSOR_EXTERNAL_DATA) return;
      let key = '', value = '';
      forEachField(file, a, b, (f, x, y) => {
        if (f === ENTRY_KEY) key = file.bytes(x, y - x).toString('utf8');
        if (f === ENTRY_VALUE) value = file.bytes(x, y - x).toString('utf8');
      });
      if (key === 'location') found.add(value);
    });
    const graph = (from: number, to: number): void => forEachField(file, from, to, (field, a, b) => {
      if (field === GRAPH_INITIALIZER) tensor(a, b);
      else if (field === GRAPH_SPARSE_INITIALIZER) forEachField(file, a, b, (f, x, y) => { if (f === SPARSE_VALUES || f === SPARSE_INDICES) tensor(x, y); });
      else if (field === GRAPH_NODE) {
        forEachField(file, a, b, (f, x, y) => {
          if (f !== NODE_ATTRIBUTE) return;
          forEachField(file, x, y, (af, p, q) => {
            if (af === ATTRIBUTE_G || af === ATTRIBUTE_GRAPHS) graph(p, q);
            else if (af === ATTRIBUTE_T || af === ATTRIBUTE_TENSORS) tensor(p, q);
          });
        });
      }
    });
    forEachField(file, 0, file.size, (field, a, b) => { if (field === MODEL_GRAPH) graph(a, b); });
  } finally {
    closeSync(fd);
  }
  return [...found];
}
