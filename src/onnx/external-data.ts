// Writing a model with its weights as external data: the rewritten graph stays small
// and onnxruntime maps the weights instead of parsing them out of a large protobuf.
import { closeSync, openSync, readSync, writeSync, fstatSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import type { Model, Tensor } from './proto.js';

const ALIGNMENT = 4096;          // page-aligned offsets let onnxruntime map tensors directly
const MIN_EXTERNAL_BYTES = 1024;  // small tensors stay inline

/** An external-data location, normalised; throws if it is empty or would leave the model file's folder. */
export function safeLocation(location: string): string {
  const normal = normalize(location);
  if (!location || isAbsolute(location) || normal === '..' || normal.startsWith(`..${sep}`)) {
    throw new Error(`external data outside the model directory (${JSON.stringify(location)})`);
  }
  return normal;
}

/** The external-data file name, relative to the model file, that a tensor points to; throws if it would escape `dir`. */
export function externalLocation(t: Tensor): { location: string; offset: number; length: number } {
  const entries = new Map((t.external_data ?? []).map((e) => [e.key, e.value]));
  let location: string;
  try {
    location = safeLocation(entries.get('location') ?? '');
  } catch (error) {
    throw new Error(`tensor ${t.name} points to ${(error as Error).message}`);
  }
  return { location, offset: Number(entries.get('offset') ?? 0), length: Number(entries.get('length') ?? -1) };
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

/** onnxruntime maps a tensor's external data only at a page-aligned offset; its own writer aligns tensors past 1 MiB. */
const MAPPED_BYTES = 1 << 20;

/**
 * The external-data files (by location) holding a tensor of 1 MiB or more at an offset onnxruntime
 * cannot map (not a multiple of 4096), as onnx.save_model writes them: onnxruntime reads those
 * into memory on every load instead of mapping them. With their total size in bytes.
 */
export function unmappableFiles(model: Model): Map<string, number> {
  const files = new Map<string, number>();
  const sizes = new Map<string, number>();
  for (const t of model.graph.initializer) {
    if (!isExternal(t)) continue;
    const { location, offset, length } = externalLocation(t);
    sizes.set(location, (sizes.get(location) ?? 0) + Math.max(length, 0));
    if (length >= MAPPED_BYTES && offset % ALIGNMENT !== 0) files.set(location, 0);
  }
  for (const location of files.keys()) files.set(location, sizes.get(location)!);
  return files;
}

/** Whether a tensor's data lives in an external file. */
export function isExternal(t: Tensor): boolean {
  return t.data_location === 1 || (t.external_data?.length ?? 0) > 0;
}

export interface WeightLayout {
  /** Reads the source model's external data. */
  source: ExternalDataReader;
  /** Where to write the weights that are copied, and its name relative to the model file. */
  dataPath: string;
  dataName: string;
  /** For a source data file (its location) that the new model may keep reading in place, the location to name; undefined: copy. */
  linked?: (location: string) => string | undefined;
  /** Told after each tensor is written (the tests pause preparation here). */
  onTensorWritten?: () => void;
}

/**
 * Points every large initializer at external data: a tensor already external in a source file
 * that `linked` keeps stays where it is (same offset and length, the linked location); every
 * other one (inline, or in a file not kept) is written to `dataPath`, page aligned. Mutates
 * `model`. Throws on a short read.
 */
export function layoutWeights(model: Model, layout: WeightLayout): void {
  const out = openSync(layout.dataPath, 'w');
  let offset = 0;
  try {
    for (const t of model.graph.initializer) {
      let bytes: Uint8Array | undefined;
      if (isExternal(t)) {
        const ext = externalLocation(t);
        const kept = layout.linked?.(ext.location);
        if (kept !== undefined) {
          t.external_data = (t.external_data ?? []).map((e) => (e.key === 'location' ? { key: 'location', value: kept } : e));
          continue;
        }
        bytes = layout.source.read(t);
      } else if (t.raw_data && t.raw_data.length >= MIN_EXTERNAL_BYTES) {
        bytes = t.raw_data;
      }
      if (!bytes) continue;
      offset = Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
      writeSync(out, bytes, 0, bytes.length, offset);
      t.raw_data = undefined;
      t.data_location = 1;
      t.external_data = [
        { key: 'location', value: layout.dataName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes.length) },
      ];
      offset += bytes.length;
      layout.onTensorWritten?.();
    }
  } finally {
    closeSync(out);
  }
}
