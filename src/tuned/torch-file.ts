// torch.save's file of a state dict (a zip archive of `<top>/data.pkl` and one `<top>/data/<key>`
// per storage) and safetensors files, read into float32 tensors; and torch's format written back.
import { UserError } from '../errors.js';
import { readPickle, writeStateDictPickle, type StorageDtype, type TensorInput, type TensorRef } from './pickle.js';
import { readZipDirectory, readZipEntry, writeZip, type ByteSource, type ZipEntry } from './zip.js';

/** A tensor read from a file: its shape and its values as float32, row-major. */
export interface Tensor { shape: number[]; data: Float32Array }

const BYTES: Record<StorageDtype, number> = { float32: 4, float16: 2, bfloat16: 2 };

let halfTable: Float32Array | undefined;

/** float32 values [n] of IEEE half-precision bits [n] (a 64 K entry table: one lookup per value). */
function halfToFloat(bits: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
      halfTable[h] = exponent === 0 ? sign * fraction * 2 ** -24
        : exponent === 31 ? (fraction ? NaN : sign * Infinity)
          : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
    }
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfTable[bits[i]];
  return out;
}

/** float32 values [n] of bfloat16 bits [n]: the top half of a float32. */
function bfloat16ToFloat(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Little-endian element bytes [n × size] (possibly unaligned) as float32 values [n]; float32 bytes that are aligned are viewed, not copied. */
function decodeElements(bytes: Uint8Array, dtype: StorageDtype): Float32Array {
  // (a copy through the Uint8Array constructor: Buffer's slice would share the unaligned memory)
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes);
  if (dtype === 'float32') return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
  const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  return dtype === 'float16' ? halfToFloat(bits) : bfloat16ToFloat(bits);
}

/** The values [∏shape] of a strided view into a storage [numel], gathered row-major. */
function gather(storage: Float32Array, ref: TensorRef): Float32Array {
  const numel = ref.shape.reduce((a, b) => a * b, 1);
  if (numel === 0) return new Float32Array(0);
  const last = ref.offset + ref.shape.reduce((sum, size, d) => sum + (size - 1) * ref.stride[d], 0);
  if (last >= storage.length) throw new UserError(`a tensor of shape [${ref.shape}] reads past the end of its storage`);
  const contiguous = ref.shape.every((_, d) => ref.shape[d] === 1 || ref.stride[d] === ref.shape.slice(d + 1).reduce((a, b) => a * b, 1));
  if (contiguous) return storage.subarray(ref.offset, ref.offset + numel);
  const out = new Float32Array(numel);
  const index = new Array<number>(ref.shape.length).fill(0);
  for (let i = 0; i < numel; i++) {
    let at = ref.offset;
    for (let d = 0; d < index.length; d++) at += index[d] * ref.stride[d];
    out[i] = storage[at];
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < ref.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/**
 * The tensors of a state dict saved by torch.save (zip format), by name, as float32. The archive's
 * top folder may have any name. Throws a UserError on a damaged or truncated archive, a hostile or
 * unsupported pickle, a value that is not a name → tensor dict, or a storage of the wrong size.
 */
export function readTorchStateDict(source: ByteSource): Map<string, Tensor> {
  const entries = readZipDirectory(source);
  const pickles = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) throw new UserError(pickles.length === 0 ? 'not a torch.save archive (no <folder>/data.pkl)' : 'a torch.save archive with several data.pkl files');
  const top = pickles[0].slice(0, -'data.pkl'.length);
  const byteOrder = entries.get(`${top}byteorder`);
  if (byteOrder && new TextDecoder().decode(readZipEntry(source, byteOrder)).trim() !== 'little') throw new UserError('a big-endian torch.save archive');
  const root = readPickle(readZipEntry(source, entries.get(pickles[0])!));
  if (!(root instanceof Map)) throw new UserError('the pickle holds no state dict (its value is not a dict)');
  const storages = new Map<string, Float32Array>();
  const result = new Map<string, Tensor>();
  for (const [name, value] of root) {
    if (typeof name !== 'string') throw new UserError('a state dict key that is not a string');
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Map || value.kind !== 'tensor') throw new UserError(`state dict entry ${name} is not a tensor`);
    const ref = value as TensorRef;
    let storage = storages.get(ref.storage.key);
    if (!storage) {
      const entry: ZipEntry | undefined = entries.get(`${top}data/${ref.storage.key}`);
      if (!entry) throw new UserError(`the storage of ${name} (data/${ref.storage.key}) is missing from the archive`);
      const expected = ref.storage.numel * BYTES[ref.storage.dtype];
      if (entry.size !== expected) throw new UserError(`the storage of ${name} holds ${entry.size} bytes, its header says ${expected}`);
      storage = decodeElements(readZipEntry(source, entry), ref.storage.dtype);
      storages.set(ref.storage.key, storage);
    }
    result.set(name, { shape: ref.shape, data: gather(storage, ref) });
  }
  return result;
}

/**
 * A torch.save file [chunks, written in order] of an OrderedDict name → float32 tensor, which
 * `torch.load(path, weights_only=True)` reads. The archive's top folder is `archive`, as torch names it.
 */
export function writeTorchStateDict(tensors: Map<string, TensorInput>, options: { forceZip64?: boolean } = {}): Uint8Array[] {
  const names = [...tensors.keys()];
  const values = [...tensors.values()];
  const files = [
    { name: 'archive/data.pkl', data: writeStateDictPickle(names, values) },
    { name: 'archive/byteorder', data: new TextEncoder().encode('little') },
    ...values.map((tensor, i) => ({ name: `archive/data/${i}`, data: new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength) })),
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ];
  return writeZip(files, options);
}

const SAFETENSORS_DTYPES: Record<string, StorageDtype> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * The tensors of a safetensors file (8-byte header length, JSON header, data), by name, as float32.
 * Throws a UserError on a damaged header, an unsupported dtype, or offsets that do not fit the data.
 */
export function readSafetensors(source: ByteSource): Map<string, Tensor> {
  if (source.size < 8) throw new UserError('not a safetensors file (too short)');
  const lengthBytes = source.read(0, 8);
  const headerLength = Number(new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > source.size - 8) throw new UserError('not a complete safetensors file (truncated or damaged)');
  let header: unknown;
  try { header = JSON.parse(new TextDecoder().decode(source.read(8, headerLength))); } catch { header = undefined; }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new UserError('a safetensors file whose header is not a JSON object');
  const dataStart = 8 + headerLength;
  const result = new Map<string, Tensor>();
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: offsets } = (info ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const type = SAFETENSORS_DTYPES[String(dtype)];
    if (!type) throw new UserError(`safetensors tensor ${name} has dtype ${String(dtype)}; lens reads F32, F16 and BF16`);
    if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && n >= 0)) throw new UserError(`safetensors tensor ${name} has no valid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((n) => Number.isSafeInteger(n) && n >= 0)) throw new UserError(`safetensors tensor ${name} has no valid data_offsets`);
    const [begin, end] = offsets as number[];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== numel * BYTES[type] || dataStart + end > source.size) throw new UserError(`safetensors tensor ${name}: its data does not match its shape or lies past the end of the file`);
    result.set(name, { shape: shape as number[], data: decodeElements(source.read(dataStart + begin, end - begin), type) });
  }
  return result;
}
