// Writing a model with its weights as external data: the rewritten graph stays small
// and onnxruntime maps the weights instead of parsing them out of a large protobuf.
import { closeSync, openSync, readSync, writeSync, fstatSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import type { Model, Tensor } from './proto.js';

const ALIGNMENT = 4096;          // page-aligned offsets let onnxruntime map tensors directly
const MIN_EXTERNAL_BYTES = 1024;  // small tensors stay inline

/** The external-data file name, relative to the model file, that a tensor points to; throws if it would escape `dir`. */
export function externalLocation(t: Tensor): { location: string; offset: number; length: number } {
  const entries = new Map((t.external_data ?? []).map((e) => [e.key, e.value]));
  const location = entries.get('location') ?? '';
  const normal = normalize(location);
  if (!location || isAbsolute(location) || normal === '..' || normal.startsWith(`..${sep}`)) {
    throw new Error(`tensor ${t.name} points to external data outside the model directory (${JSON.stringify(location)})`);
  }
  return { location: normal, offset: Number(entries.get('offset') ?? 0), length: Number(entries.get('length') ?? -1) };
}

/** Opens external-data files of one model once each; close() when done. */
export class ExternalDataReader {
  private files = new Map<string, number>();
  constructor(private readonly sourceDir: string) {}

  /** The bytes of a tensor stored as external data; throws on a short read or a path outside the model. */
  read(t: Tensor): Uint8Array {
    const ext = externalLocation(t);
    let fd = this.files.get(ext.location);
    if (fd === undefined) { fd = openSync(join(this.sourceDir, ext.location), 'r'); this.files.set(ext.location, fd); }
    const length = ext.length >= 0 ? ext.length : fstatSync(fd).size - ext.offset;
    const bytes = Buffer.allocUnsafe(length);
    if (readSync(fd, bytes, 0, length, ext.offset) !== length) throw new Error(`external data for ${t.name} is shorter than declared`);
    return bytes;
  }

  close(): void {
    for (const fd of this.files.values()) closeSync(fd);
    this.files.clear();
  }
}

/** Whether a tensor's data lives in an external file. */
export function isExternal(t: Tensor): boolean {
  return t.data_location === 1 || (t.external_data?.length ?? 0) > 0;
}

/**
 * Writes every large initializer's bytes (inline or read from the source model's external data in `sourceDir`)
 * into `dataPath`, page aligned, and points the tensors at it as `dataName`. Mutates `model`. Throws on a short read.
 */
export function moveWeightsToExternalData(model: Model, source: ExternalDataReader, dataPath: string, dataName: string): void {
  const out = openSync(dataPath, 'w');
  let offset = 0;
  try {
    for (const t of model.graph.initializer) {
      let bytes: Uint8Array | undefined;
      if (isExternal(t)) {
        bytes = source.read(t);
      } else if (t.raw_data && t.raw_data.length >= MIN_EXTERNAL_BYTES) {
        bytes = t.raw_data;
      }
      if (!bytes) continue;
      offset = Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
      writeSync(out, bytes, 0, bytes.length, offset);
      t.raw_data = undefined;
      t.data_location = 1;
      t.external_data = [
        { key: 'location', value: dataName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes.length) },
      ];
      offset += bytes.length;
    }
  } finally {
    closeSync(out);
  }
}
