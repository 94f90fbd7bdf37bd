// The subset of the zip format torch.save uses: stored (uncompressed) entries, zip64 records for
// archives past 4 GB, and no encryption. Reads through a random-access source so a lens of several
// gigabytes never has to sit in one buffer; writes as a list of chunks for the same reason.
import * as zlib from 'node:zlib';
import { UserError } from '../errors.js';

/** Random access to a file's bytes: `read` returns exactly `length` bytes at `offset` (or throws). */
export interface ByteSource { readonly size: number; read(offset: number, length: number): Uint8Array }

/** A ByteSource over bytes in memory; reads past the end throw a UserError. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(offset, length) {
      if (offset < 0 || offset + length > bytes.length) throw truncated();
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** One stored entry: its name, where its data starts in the archive and its length in bytes. */
export interface ZipEntry { name: string; dataOffset: number; size: number; crc32: number }

const EOCD = 0x06054b50, ZIP64_EOCD = 0x06064b50, ZIP64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50, LOCAL = 0x04034b50;
const ZIP64_EXTRA = 0x0001, MAX32 = 0xffffffff, MAX16 = 0xffff;

const truncated = () => new UserError('not a complete zip archive (truncated or damaged)');

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(v: DataView, at: number): number {
  const value = v.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw truncated();
  return Number(value);
}

/**
 * The entries of a zip archive, by name, from its central directory. Throws a UserError on a
 * damaged or truncated archive, a compressed or encrypted entry, or data past the end of the file.
 */
export function readZipDirectory(source: ByteSource): Map<string, ZipEntry> {
  // The end record sits in the last 22 bytes plus an archive comment of at most 64 KiB.
  const tailLength = Math.min(source.size, 22 + MAX16);
  if (tailLength < 22) throw truncated();
  const tailStart = source.size - tailLength;
  const tail = view(source.read(tailStart, tailLength));
  let eocd = -1;
  for (let at = tailLength - 22; at >= 0; at--) {
    if (tail.getUint32(at, true) === EOCD) { eocd = at; break; }
  }
  if (eocd < 0) throw truncated();
  let count = tail.getUint16(eocd + 10, true);
  let directorySize = tail.getUint32(eocd + 12, true);
  let directoryOffset = tail.getUint32(eocd + 16, true);
  if (eocd >= 20 && tail.getUint32(eocd - 20, true) === ZIP64_LOCATOR) {
    const recordOffset = u64(tail, eocd - 20 + 8);
    if (recordOffset + 56 > source.size) throw truncated();
    const record = view(source.read(recordOffset, 56));
    if (record.getUint32(0, true) !== ZIP64_EOCD) throw truncated();
    count = u64(record, 32);
    directorySize = u64(record, 40);
    directoryOffset = u64(record, 48);
  }
  if (directoryOffset + directorySize > source.size) throw truncated();
  const directory = view(source.read(directoryOffset, directorySize));
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directorySize || directory.getUint32(at, true) !== CENTRAL) throw truncated();
    const flags = directory.getUint16(at + 8, true);
    const method = directory.getUint16(at + 10, true);
    const crc32 = directory.getUint32(at + 16, true);
    let compressedSize = directory.getUint32(at + 20, true);
    let size = directory.getUint32(at + 24, true);
    const nameLength = directory.getUint16(at + 28, true);
    const extraLength = directory.getUint16(at + 30, true);
    const commentLength = directory.getUint16(at + 32, true);
    let localOffset = directory.getUint32(at + 42, true);
    if (at + 46 + nameLength + extraLength + commentLength > directorySize) throw truncated();
    const name = new TextDecoder().decode(new Uint8Array(directory.buffer, directory.byteOffset + at + 46, nameLength));
    // The zip64 extra field holds, in this order, only the fields whose 32-bit slot is all ones.
    let extra = at + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = directory.getUint16(extra, true), length = directory.getUint16(extra + 2, true);
      if (id === ZIP64_EXTRA) {
        let field = extra + 4;
        const next = (): number => {
          if (field + 8 > extra + 4 + length) throw truncated();
          const value = u64(directory, field);
          field += 8;
          return value;
        };
        if (size === MAX32) size = next();
        if (compressedSize === MAX32) compressedSize = next();
        if (localOffset === MAX32) localOffset = next();
      }
      extra += 4 + length;
    }
    if (flags & 1) throw new UserError(`zip entry ${name} is encrypted`);
    if (method !== 0 || compressedSize !== size) throw new UserError(`zip entry ${name} is compressed (method ${method}); torch.save stores its entries uncompressed`);
    if (localOffset + 30 > source.size) throw truncated();
    const local = view(source.read(localOffset, 30));
    if (local.getUint32(0, true) !== LOCAL) throw truncated();
    const dataOffset = localOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
    if (dataOffset + size > source.size) throw truncated();
    entries.set(name, { name, dataOffset, size, crc32 });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The bytes of one entry [size], checked against its CRC-32. Throws a UserError when they differ. */
export function readZipEntry(source: ByteSource, entry: ZipEntry): Uint8Array {
  const bytes = source.read(entry.dataOffset, entry.size);
  if (crc32(bytes) !== entry.crc32) throw new UserError(`zip entry ${entry.name} is damaged (CRC mismatch)`);
  return bytes;
}

let crcTables: Uint32Array[] | undefined;

// zlib's own (Node ≥ 20.15) is some 10x faster than the fallback below.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 (the zip polynomial) of bytes, optionally continuing from a previous value. */
export function crc32(bytes: Uint8Array, previous = 0): number {
  return nativeCrc32 ? nativeCrc32(bytes, previous) : portableCrc32(bytes, previous);
}

/** crc32 in plain JavaScript (exported for its test against zlib's). */
export function portableCrc32(bytes: Uint8Array, previous = 0): number {
  if (!crcTables) {
    // Slicing by 8: table k gives the CRC of a byte followed by k zero bytes, so that eight bytes
    // fold in per step (about 4x a byte at a time, which matters on a lens of hundreds of megabytes).
    const base = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      base[n] = c >>> 0;
    }
    crcTables = [base];
    for (let k = 1; k < 8; k++) crcTables.push(base.map((_, n) => (crcTables![k - 1][n] >>> 8) ^ base[crcTables![k - 1][n] & 0xff]));
  }
  const [t0, t1, t2, t3, t4, t5, t6, t7] = crcTables;
  let c = ~previous >>> 0;
  let i = 0;
  for (const end = bytes.length - 7; i < end; i += 8) {
    const lo = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c = t7[lo & 0xff] ^ t6[(lo >>> 8) & 0xff] ^ t5[(lo >>> 16) & 0xff] ^ t4[lo >>> 24]
      ^ t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < bytes.length; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** A file to store: its name in the archive and its bytes. */
export interface ZipInput { name: string; data: Uint8Array }

const ALIGNMENT = 64;

/**
 * A zip archive of stored entries [chunks, to be written in order], each entry's data aligned to
 * 64 bytes as torch aligns them (so the storages can be memory-mapped). Zip64 records are written
 * when an offset or size needs them, or always with `forceZip64`.
 */
export function writeZip(files: ZipInput[], options: { forceZip64?: boolean } = {}): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const encoder = new TextEncoder();
  for (const file of files) {
    const name = encoder.encode(file.name);
    const crc = crc32(file.data);
    const zip64 = options.forceZip64 === true || file.data.length >= MAX32 || offset >= MAX32;
    // Local header: the zip64 extra (both sizes) when needed, then padding so the data is aligned.
    const localZip64 = zip64 ? 20 : 0;
    const unpadded = offset + 30 + name.length + localZip64 + 4;
    const padding = (ALIGNMENT - (unpadded % ALIGNMENT)) % ALIGNMENT;
    const local = new Uint8Array(30 + name.length + localZip64 + 4 + padding);
    const lv = view(local);
    lv.setUint32(0, LOCAL, true);
    lv.setUint16(4, zip64 ? 45 : 20, true);
    lv.setUint16(8, 0, true); // stored
    lv.setUint32(14, crc, true);
    lv.setUint32(18, zip64 ? MAX32 : file.data.length, true);
    lv.setUint32(22, zip64 ? MAX32 : file.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, localZip64 + 4 + padding, true);
    local.set(name, 30);
    let at = 30 + name.length;
    if (zip64) {
      lv.setUint16(at, ZIP64_EXTRA, true); lv.setUint16(at + 2, 16, true);
      lv.setBigUint64(at + 4, BigInt(file.data.length), true); lv.setBigUint64(at + 12, BigInt(file.data.length), true);
      at += 20;
    }
    lv.setUint16(at, 0x4246, true); lv.setUint16(at + 2, padding, true); // 'FB': torch's padding record
    chunks.push(local, file.data);
    // Central record: the zip64 extra carries both sizes and the local header's offset.
    const centralZip64 = zip64 ? 28 : 0;
    const record = new Uint8Array(46 + name.length + centralZip64);
    const cv = view(record);
    cv.setUint32(0, CENTRAL, true);
    cv.setUint16(4, zip64 ? 45 : 20, true);
    cv.setUint16(6, zip64 ? 45 : 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, zip64 ? MAX32 : file.data.length, true);
    cv.setUint32(24, zip64 ? MAX32 : file.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, centralZip64, true);
    cv.setUint32(42, zip64 ? MAX32 : offset, true);
    record.set(name, 46);
    if (zip64) {
      const e = 46 + name.length;
      cv.setUint16(e, ZIP64_EXTRA, true); cv.setUint16(e + 2, 24, true);
      cv.setBigUint64(e + 4, BigInt(file.data.length), true);
      cv.setBigUint64(e + 12, BigInt(file.data.length), true);
      cv.setBigUint64(e + 20, BigInt(offset), true);
    }
    central.push(record);
    offset += local.length + file.data.length;
  }
  const directoryOffset = offset;
  const directorySize = central.reduce((sum, c) => sum + c.length, 0);
  chunks.push(...central);
  const zip64End = options.forceZip64 === true || directoryOffset + directorySize >= MAX32 || files.length >= MAX16;
  if (zip64End) {
    const record = new Uint8Array(56 + 20);
    const rv = view(record);
    rv.setUint32(0, ZIP64_EOCD, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true); rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(files.length), true);
    rv.setBigUint64(32, BigInt(files.length), true);
    rv.setBigUint64(40, BigInt(directorySize), true);
    rv.setBigUint64(48, BigInt(directoryOffset), true);
    rv.setUint32(56, ZIP64_LOCATOR, true);
    rv.setBigUint64(56 + 8, BigInt(directoryOffset + directorySize), true);
    rv.setUint32(56 + 16, 1, true);
    chunks.push(record);
  }
  const end = new Uint8Array(22);
  const ev = view(end);
  ev.setUint32(0, EOCD, true);
  ev.setUint16(8, zip64End ? MAX16 : files.length, true);
  ev.setUint16(10, zip64End ? MAX16 : files.length, true);
  ev.setUint32(12, zip64End ? MAX32 : directorySize, true);
  ev.setUint32(16, zip64End ? MAX32 : directoryOffset, true);
  chunks.push(end);
  return chunks;
}
