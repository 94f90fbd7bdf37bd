// One file from the hub, resumable and verified. As huggingface_hub does: a HEAD request (not
// following the hub's redirect to its storage) gives what the hub published for the file — its
// ETag (X-Linked-Etag for LFS files: their sha256) and size (X-Linked-Size, else Content-Length).
// The bytes go to `<file>.incomplete`, beside `<file>.incomplete.json` naming that ETag; a cut
// download continues from there with Range + If-Range when the hub still publishes the same ETag,
// and starts over when it changed. Every byte is hashed as it streams; the file is renamed into
// place only when its sha256 (LFS files) or size (the rest) is the one published.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import { writeAtomically } from './atomic.js';
import { tryLock, unlock } from './lease.js';
import { reachedPhase } from './phases.js';

/** What the hub publishes about a file, read before its bytes. */
export interface PublishedFile {
  /** The repository path of the file (for messages). */
  file: string;
  /** Where its bytes are served (the hub's redirect target for LFS files). */
  url: string;
  /** The hub's ETag, unquoted, without W/. */
  etag?: string;
  /** The sha256 the hub publishes (an LFS file's ETag), lowercase hex. */
  sha256?: string;
  /** Its size in bytes, when published. */
  size?: number;
}

/** How a download reports and gives up. */
export interface Transfer {
  headers: Record<string, string>;
  /** Silence for this long abandons the request. */
  stallMs: number;
  /** Called as bytes arrive with the file's bytes on disk and its size. */
  onBytes?: (done: number, total: number | undefined) => void;
  /** Concurrent Range requests for a large file (1: one stream). */
  connections?: number;
  /** Files smaller than this are fetched in one stream. */
  parallelMinBytes?: number;
  /** Cancels every request of the transfer (the partial file is kept to resume). */
  signal?: AbortSignal;
}

/**
 * Beside a partial file: the hub's ETag and size it belongs to, and the validator its server gave
 * (a strong ETag, else Last-Modified) to send as If-Range.
 */
interface PartialRecord { etag: string; size?: number; rangeValidator?: string; ranges?: ByteRange[] }

/** One of the parallel pieces of a file: bytes [start, end) of which [start, next) are on disk. */
interface ByteRange { start: number; end: number; next: number }

const REDIRECTS = 5;
const SHA256 = /^[0-9a-f]{64}$/;

/** An ETag as compared: without a W/ prefix and quotes. */
export function normalizeEtag(raw: string | null): string | undefined {
  if (!raw) return undefined;
  return raw.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1') || undefined;
}

/** A request that gives up after `stallMs` of silence or when `cancel` aborts; `touch` restarts the clock. */
function stallGuard(stallMs: number, cancel?: AbortSignal) {
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), stallMs);
  const abort = () => controller.abort();
  if (cancel?.aborted) abort();
  else cancel?.addEventListener('abort', abort, { once: true });
  return {
    signal: controller.signal,
    touch() { clearTimeout(timer); timer = setTimeout(() => controller.abort(), stallMs); },
    done() { clearTimeout(timer); cancel?.removeEventListener('abort', abort); },
    describe(error: unknown): string {
      if (cancel?.aborted) return 'cancelled';
      if (controller.signal.aborted) return `no data for ${stallMs / 1000} s`;
      const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
      return cause?.code ?? cause?.message ?? (error as Error)?.message ?? String(error);
    },
  };
}

/**
 * fetch, tried again (up to twice) when the connection fails before any answer: a kept-alive
 * connection the server closed just as it was reused fails this way, and says nothing about the hub.
 */
async function fetchAnswer(url: string, init: RequestInit, signal: AbortSignal): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(url, { ...init, signal });
    } catch (error) {
      if (signal.aborted || attempt >= 2) throw error;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
  }
}

/** A download the server refused, with its HTTP status (a 404 lets a caller try another name). */
export class HttpFailure extends UserError {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

function httpFailure(file: string, status: number, url: string): UserError {
  const why = status === 401 || status === 403 ? ' (set HF_TOKEN for gated or private models)' : '';
  return new HttpFailure(`download of ${file} failed: HTTP ${status} from ${url}${why}`, status);
}

/** Asks the hub what it publishes for `file` at `url` (HEAD; redirects within the hub followed, the one to storage read). Throws UserError. */
export async function publishedFile(file: string, url: string, transfer: Transfer): Promise<PublishedFile> {
  const guard = stallGuard(transfer.stallMs, transfer.signal);
  try {
    let current = url;
    for (let hop = 0; hop <= REDIRECTS; hop++) {
      let response: Response;
      try {
        response = await fetchAnswer(current, { method: 'HEAD', headers: transfer.headers, redirect: 'manual' }, guard.signal);
      } catch (error) {
        throw new UserError(`cannot reach the hub at ${new URL(current).origin} for ${file}: ${guard.describe(error)}`, 'check the network, HF_ENDPOINT, or use --offline with a cached model');
      }
      const header = (name: string) => response.headers.get(name);
      const location = header('location');
      const linkedEtag = header('x-linked-etag');
      if (response.status >= 300 && response.status < 400 && location) {
        const next = new URL(location, current).href;
        // The redirect of an LFS file to storage carries what the hub publishes for it; other redirects (renamed repos) are followed.
        if (linkedEtag === null && header('x-linked-size') === null) { current = next; continue; }
        return described(file, next, linkedEtag ?? header('etag'), header('x-linked-size') ?? header('content-length'));
      }
      if (!response.ok) throw httpFailure(file, response.status, current);
      return described(file, current, linkedEtag ?? header('etag'), header('x-linked-size') ?? header('content-length'));
    }
    throw new UserError(`download of ${file} failed: more than ${REDIRECTS} redirects from ${url}`);
  } finally {
    guard.done();
  }
}

function described(file: string, url: string, rawEtag: string | null, rawSize: string | null): PublishedFile {
  const etag = normalizeEtag(rawEtag);
  const size = rawSize !== null && /^\d+$/.test(rawSize.trim()) ? Number(rawSize) : undefined;
  const sha256 = etag && SHA256.test(etag.toLowerCase()) ? etag.toLowerCase() : undefined;
  return { file, url, etag, sha256, size };
}

function readPartialRecord(path: string): PartialRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(path, 'utf8')) as PartialRecord;
    return typeof record.etag === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Hashes the bytes already on disk of a partial file. */
async function hashExisting(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/** What If-Range may carry for a response: its strong ETag (weak ones are not allowed there), else its Last-Modified date. */
function rangeValidator(response: Response): string | undefined {
  const etag = response.headers.get('etag')?.trim();
  if (etag && !etag.startsWith('W/')) return etag;
  return response.headers.get('last-modified') ?? undefined;
}

/** Removes a partial file and its record (a changed or corrupt download starts over). */
function discardPartial(partial: string): void {
  rmSync(partial, { force: true });
  rmSync(`${partial}.json`, { force: true });
}

/**
 * Downloads `published` to `dest`: resumed from `<dest>.incomplete` when its record names the same
 * ETag, verified, then renamed into place. Concurrent processes take turns by a lock file. Returns
 * the file's size. Throws UserError (a cut or stalled transfer leaves the partial file to resume).
 */
export async function downloadVerified(published: PublishedFile, dest: string, transfer: Transfer): Promise<number> {
  const { file } = published;
  mkdirSync(dirname(dest), { recursive: true });
  const partial = `${dest}.incomplete`;
  const lock = `${partial}.lock`;
  let waited = false;
  while (!tryLock(lock)) {
    waited = true;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    // Another process finished it while we waited: it verified the file before renaming it into place.
    if (waited && existsSync(dest) && published.size !== undefined && statSync(dest).size === published.size) return published.size;
    if (published.size !== undefined && published.size >= (transfer.parallelMinBytes ?? Infinity) && (transfer.connections ?? 1) > 1) {
      const size = await transferInRanges(published, dest, partial, transfer);
      if (size !== undefined) return size;
    }
    return await transferFile(published, dest, partial, transfer);
  } finally {
    unlock(lock);
  }
}

async function transferFile(published: PublishedFile, dest: string, partial: string, transfer: Transfer): Promise<number> {
  const { file } = published;
  const recordPath = `${partial}.json`;
  const record = readPartialRecord(recordPath);
  let start = 0;
  // Resumed only when the hub still publishes what the partial file was (same ETag and size) and a
  // splice of two versions would be caught: by If-Range at the server, or by the sha256 at the end.
  const resumable = record !== undefined && record.ranges === undefined && record.etag === (published.etag ?? '') && record.size === published.size && (record.rangeValidator !== undefined || published.sha256 !== undefined);
  if (resumable && existsSync(partial)) {
    start = statSync(partial).size;
    // Past the end, or all there but never verified (killed just before the rename): fetched anew.
    if (published.size !== undefined && start >= published.size) start = 0;
  }
  if (start === 0) discardPartial(partial);
  let hasher = createHash('sha256');
  if (start > 0 && published.sha256) await hashExisting(partial, hasher);

  const guard = stallGuard(transfer.stallMs, transfer.signal);
  try {
    const headers: Record<string, string> = { ...transfer.headers };
    if (start > 0) {
      headers.range = `bytes=${start}-`;
      if (record!.rangeValidator) headers['if-range'] = record!.rangeValidator;
    }
    let response: Response;
    try {
      response = await fetchAnswer(published.url, { headers, redirect: 'follow' }, guard.signal);
    } catch (error) {
      throw new UserError(`cannot reach the hub at ${new URL(published.url).origin} for ${file}: ${guard.describe(error)}`, 'check the network, HF_ENDPOINT, or use --offline with a cached model');
    }
    if (!response.body || (response.status !== 200 && !(start > 0 && response.status === 206))) {
      await response.body?.cancel();
      // 416: the range is past the end (the file shrank on the hub): start over next time.
      if (response.status === 416) discardPartial(partial);
      throw httpFailure(file, response.status, published.url);
    }
    if (response.status === 206) {
      const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '');
      if (!range || Number(range[1]) !== start) {
        await response.body.cancel();
        discardPartial(partial);
        throw new UserError(`download of ${file} failed: the hub answered a resume from byte ${start} with ${response.headers.get('content-range') ?? 'no Content-Range'}`, 'run the command again to start it over');
      }
    } else if (start > 0) {
      // 200 to If-Range: the file changed since the partial was written; its bytes are worthless.
      start = 0;
      hasher = createHash('sha256');
      discardPartial(partial);
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    const total = published.size ?? (Number.isFinite(declared) ? start + declared : undefined);
    if (start === 0) writeAtomically(recordPath, JSON.stringify({ etag: published.etag ?? '', size: published.size, rangeValidator: rangeValidator(response) } satisfies PartialRecord));
    const out = createWriteStream(partial, { flags: start > 0 ? 'a' : 'w' });
    let received = start;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        guard.touch();
        const first = received === start;
        received += chunk.length;
        if (total !== undefined && received > total) throw new Mismatch(`${received} bytes where the hub published ${total}`);
        hasher.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        transfer.onBytes?.(received, total);
        if (first && start === 0 && file.endsWith('.onnx')) await new Promise<void>((r) => out.write('', () => r())).then(() => reachedPhase('mid-download'));
      }
    } catch (error) {
      if (error instanceof Mismatch) throw rejected(file, partial, error.message);
      throw new UserError(`download of ${file} was interrupted: ${guard.describe(error)}`, 'run the command again to resume it');
    } finally {
      await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
    }
    if (total !== undefined && received < total) {
      throw new UserError(`download of ${file} was cut short (${received} of ${total} bytes)`, 'run the command again to resume it');
    }
    if (published.sha256) {
      const actual = hasher.digest('hex');
      if (actual !== published.sha256) throw rejected(file, partial, `sha256 ${actual} where the hub published ${published.sha256}`);
    }
    renameSync(partial, dest);
    rmSync(recordPath, { force: true });
    return received;
  } finally {
    guard.done();
  }
}

/** Bytes that are not the file the hub published. */
class Mismatch extends Error {}

function rejected(file: string, partial: string, why: string): UserError {
  discardPartial(partial);
  return new UserError(`download of ${file} does not match the hub (${why}); discarded`, 'run the command again to download it anew');
}

/** The file changed on the hub while its ranges were fetched (a 200 to If-Range). */
class Changed extends Error {}

/** `size` bytes cut into `count` contiguous ranges of nearly equal length. */
function splitRanges(size: number, count: number): ByteRange[] {
  const pieces = Math.max(1, Math.min(count, size));
  return Array.from({ length: pieces }, (_, i) => {
    const start = Math.floor((size * i) / pieces);
    return { start, end: Math.floor((size * (i + 1)) / pieces), next: start };
  });
}

/** What storage says of ranges before any byte is fetched: whether it serves them, and its validator for If-Range. */
async function rangeSupport(published: PublishedFile, transfer: Transfer): Promise<{ ranges: boolean; validator?: string }> {
  const guard = stallGuard(transfer.stallMs, transfer.signal);
  try {
    const response = await fetchAnswer(published.url, { method: 'HEAD', headers: transfer.headers, redirect: 'follow' }, guard.signal);
    const length = Number(response.headers.get('content-length') ?? NaN);
    const ranges = response.ok && response.headers.get('accept-ranges')?.trim().toLowerCase() === 'bytes' && length === published.size;
    return { ranges, validator: rangeValidator(response) };
  } catch {
    return { ranges: false }; // the one stream that follows reports what is wrong
  } finally {
    guard.done();
  }
}

/**
 * Downloads `published` as `transfer.connections` concurrent Range requests, each written at its
 * offset in `<dest>.incomplete`; the record beside it says how far each range got (saved after every
 * write, so a cut refetches at most one chunk per range). Resumed when the record names the same
 * ETag, size and validator. The sha256 is computed over the whole file once assembled (ranges arrive
 * out of order). Returns the size, or undefined when storage serves no ranges or the file changed
 * (the caller then fetches it in one stream, from the start). Throws UserError.
 */
async function transferInRanges(published: PublishedFile, dest: string, partial: string, transfer: Transfer): Promise<number | undefined> {
  const { file } = published;
  const size = published.size!;
  const recordPath = `${partial}.json`;
  const previous = readPartialRecord(recordPath);
  let record: PartialRecord;
  if (previous?.ranges && previous.etag === (published.etag ?? '') && previous.size === size && previous.rangeValidator !== undefined && existsSync(partial) && statSync(partial).size === size) {
    record = previous;
  } else {
    const support = await rangeSupport(published, transfer);
    // Without a validator a splice of two versions could only be caught by a sha256; without either, one stream.
    if (!support.ranges || support.validator === undefined) return undefined;
    discardPartial(partial);
    record = { etag: published.etag ?? '', size, rangeValidator: support.validator, ranges: splitRanges(size, transfer.connections!) };
    const created = await open(partial, 'w');
    await created.truncate(size);
    await created.close();
    writeAtomically(recordPath, JSON.stringify(record));
  }
  const ranges = record.ranges!;
  const onDisk = () => ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  const handle = await open(partial, 'r+');
  const fetchRange = async (range: ByteRange) => {
    const guard = stallGuard(transfer.stallMs, transfer.signal);
    try {
      const headers = { ...transfer.headers, range: `bytes=${range.next}-${range.end - 1}`, 'if-range': record.rangeValidator! };
      let response: Response;
      try {
        response = await fetchAnswer(published.url, { headers, redirect: 'follow' }, guard.signal);
      } catch (error) {
        throw new UserError(`cannot reach the hub at ${new URL(published.url).origin} for ${file}: ${guard.describe(error)}`, 'check the network, HF_ENDPOINT, or use --offline with a cached model');
      }
      if (response.status === 200) { await response.body?.cancel(); throw new Changed(); }
      if (response.status !== 206 || !response.body) { await response.body?.cancel(); throw httpFailure(file, response.status, published.url); }
      const answered = /^bytes (\d+)-(\d+)\//.exec(response.headers.get('content-range') ?? '');
      if (!answered || Number(answered[1]) !== range.next || Number(answered[2]) > range.end - 1) {
        await response.body.cancel();
        throw new Changed();
      }
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          guard.touch();
          if (range.next + chunk.length > range.end) throw new Mismatch(`more bytes than the range ${range.start}-${range.end - 1} asked for`);
          await handle.write(chunk, 0, chunk.length, range.next);
          range.next += chunk.length;
          writeAtomically(recordPath, JSON.stringify(record));
          transfer.onBytes?.(onDisk(), size);
        }
      } catch (error) {
        if (error instanceof Mismatch) throw error;
        throw new UserError(`download of ${file} was interrupted: ${guard.describe(error)}`, 'run the command again to resume it');
      }
      if (range.next < range.end) throw new UserError(`download of ${file} was cut short (${onDisk()} of ${size} bytes)`, 'run the command again to resume it');
    } finally {
      guard.done();
    }
  };
  let outcomes: PromiseSettledResult<void>[];
  try {
    outcomes = await Promise.allSettled(ranges.filter((r) => r.next < r.end).map(fetchRange));
  } finally {
    await handle.close();
  }
  const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason as unknown);
  if (failures.some((e) => e instanceof Changed)) { discardPartial(partial); return undefined; }
  const mismatch = failures.find((e) => e instanceof Mismatch);
  if (mismatch) throw rejected(file, partial, (mismatch as Mismatch).message);
  if (failures.length > 0) throw failures[0];
  if (published.sha256) {
    const hasher = createHash('sha256');
    await hashExisting(partial, hasher);
    const actual = hasher.digest('hex');
    if (actual !== published.sha256) throw rejected(file, partial, `sha256 ${actual} where the hub published ${published.sha256}`);
  }
  renameSync(partial, dest);
  rmSync(recordPath, { force: true });
  return size;
}
