// The one-time preparation of a model for the lens: rewrite its ONNX graph to expose the
// residual stream and cache the result under $LENS_CACHE/lens/<key>, keyed by the source's
// content, built in a temporary directory and renamed into place (never half-written).
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { Worker } from 'node:worker_threads';
import { addLensOutputs, GraphStructureError, type TransposeCheck } from '../onnx/lens-graph.js';
import { hasQuantizedProducts } from '../onnx/stored-products.js';
import { ExternalDataReader, isExternal, layoutWeights, unmappableFiles } from '../onnx/external-data.js';
import { DataType, decodeModel, encodeModel, type Model, type Tensor } from '../onnx/proto.js';
import type { Dtype } from './paths.js';
import { commitTemporary, discardTemporary, removeStaleTemporaries, temporaryPath } from './atomic.js';
import { entryConfig } from './files.js';
import type { ResolvedModel } from './resolved.js';
import { reachedPhase } from './phases.js';
import { holdDirectory, waitWhileRemoved } from './lease.js';

/** Bumped whenever the rewrite changes, so older cache entries are not reused. */
const REWRITE_VERSION = 8;
/** The file that marks a complete entry and says what it was built from. */
export const ENTRY_MARKER = 'lens-entry.json';
// The tests lower these ($LENS_TEST_DIGEST=<whole-file limit>,<samples>) to show that a damaged
// region the samples miss is still caught by the file's recorded modification time.
const [WHOLE_FILE_LIMIT, SAMPLES] = (process.env.LENS_TEST_DIGEST ?? `${8 << 20},64`).split(',').map(Number);
const SAMPLE_BYTES = 64 << 10;
/** Where an entry keeps its links to the source's own data files, relative to its ONNX file. */
const SOURCE_LINKS = 'source';

export interface PreparedModel {
  /** The cache entry: a model directory in the hub layout holding the rewritten graph. */
  dir: string;
  /** Whether this call built it (false: it was cached). */
  built: boolean;
  /** Whether the lens head streams the tied embedding (then weight prepacking only costs load time). */
  tiedHead: boolean;
  /** Whether the graph has integer or n-bit products, whose kernels onnxruntime may pick differently without prepacked weights (see hasQuantizedProducts). */
  quantizedProducts: boolean;
  /** Why attribute has no per-head parts on this graph (undefined when it has them or attributes nothing). */
  headsRefused?: string;
  /** Why attribute cannot read this graph's final norm and head (undefined when it can). */
  attributionRefused?: string;
}

interface FileRecord { size: number; mtimeMs: number; digest: string }
/**
 * What the entry did with source data files onnxruntime cannot map (unaligned large tensors):
 * copied them page aligned (bytes on disk, faster cold loads) or kept them linked (and why).
 */
export interface AlignedCopy { files: string[]; bytes: number; copied: boolean; reason?: string }
export interface EntryMarker { version: number; source: string; dtype: Dtype; tiedHead: boolean; quantizedProducts: boolean; headsRefused?: string; attributionRefused?: string; files: Record<string, FileRecord>; alignedCopy?: AlignedCopy }

/** Free space the disk keeps after an aligned copy: 1 GiB or 5% of it, whichever is more. */
function spareAfter(dir: string, bytes: number): boolean {
  try {
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize, total = fs.blocks * fs.bsize;
    return free - bytes >= Math.max(1 << 30, 0.05 * total);
  } catch {
    return false;
  }
}

/**
 * Whether to copy unaligned source files page aligned into the entry: `LENS_ALIGNED_COPY=never`
 * keeps them linked (no disk cost, slower cold loads), the default copies them when the disk
 * keeps its spare room after the copy.
 */
function alignedCopyPolicy(unmappable: Map<string, number>, dir: string, env: NodeJS.ProcessEnv): AlignedCopy | undefined {
  if (unmappable.size === 0) return undefined;
  const files = [...unmappable.keys()];
  const bytes = [...unmappable.values()].reduce((a, b) => a + b, 0);
  if (env.LENS_ALIGNED_COPY === 'never') return { files, bytes, copied: false, reason: 'LENS_ALIGNED_COPY=never' };
  if (!spareAfter(dir, bytes)) return { files, bytes, copied: false, reason: 'not enough free disk space' };
  return { files, bytes, copied: true };
}

/**
 * A digest of a file's bytes: all of them up to 8 MiB; past that its size and 64 evenly spread
 * 64 KiB samples (catches truncation and damaged regions in milliseconds, not every bit flip).
 */
function fileDigest(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const { size } = fstatSync(fd);
    hash.update(`${size}\0`);
    if (size <= WHOLE_FILE_LIMIT || SAMPLES < 2) {
      hash.update(readFileSync(fd));
    } else {
      const block = Buffer.alloc(SAMPLE_BYTES);
      for (let i = 0; i < SAMPLES; i++) {
        const offset = Math.floor(((size - SAMPLE_BYTES) * i) / (SAMPLES - 1));
        hash.update(block.subarray(0, readSync(fd, block, 0, SAMPLE_BYTES, offset)));
      }
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * A fingerprint of the files a model's graph comes from: the config, the ONNX file and every data
 * file it needs, each by its sampled bytes and, for a user's directory (edited in place), its
 * modification time. Downloads are keyed by content alone: concurrent downloads of the same file
 * land with different times.
 */
function sourceKey(model: ResolvedModel): string {
  const withTimes = !model.downloaded;
  const hash = createHash('sha256').update(`lens-rewrite-${REWRITE_VERSION}\0${model.dtype}\0`);
  hash.update(readFileSync(join(model.dir, 'config.json')));
  for (const file of [model.onnx, ...model.dataFiles]) {
    const path = join(model.dir, file);
    hash.update(`${file}\0${withTimes ? statSync(path).mtimeMs : ''}\0${fileDigest(path)}\0`);
  }
  return hash.digest('hex').slice(0, 32);
}

function recordFile(path: string): FileRecord {
  const { size, mtimeMs } = statSync(path);
  return { size, mtimeMs, digest: fileDigest(path) };
}

/** The entry's marker if the entry is complete and undamaged (every file at its recorded size), else undefined. */
function goodEntry(dir: string): EntryMarker | undefined {
  try {
    const marker = JSON.parse(readFileSync(join(dir, ENTRY_MARKER), 'utf8')) as EntryMarker;
    // Size and modification time catch any write since (a 1 MiB overwrite anywhere in GPT-2's
    // weights, which the content samples alone could miss); the samples catch the rest.
    const unchanged = ([file, recorded]: [string, FileRecord]) => {
      const { size, mtimeMs } = statSync(join(dir, file));
      return size === recorded.size && mtimeMs === recorded.mtimeMs && fileDigest(join(dir, file)) === recorded.digest;
    };
    const complete = Object.entries(marker.files).every(unchanged);
    return complete && marker.version === REWRITE_VERSION ? marker : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns the cached lens model of `model` (of `layers` blocks), building it first if needed, and
 * holds the entry for this process (`lens cache` leaves it alone while we run). Throws UserError
 * for unreadable models.
 */
export async function prepareLensModel(model: ResolvedModel, layers: number, onBuild?: () => void): Promise<PreparedModel> {
  for (let attempt = 0; ; attempt++) {
    const prepared = await prepareOnce(model, layers, onBuild);
    // Held only once in place; a `lens cache rm` that got there first is waited out and the entry built again.
    if (holdDirectory(prepared.dir)) return prepared;
    if (attempt > 0) throw new UserError(`the cache entry ${prepared.dir} is being removed by another lens process`, 'run the command again');
    await waitWhileRemoved(prepared.dir);
  }
}

async function prepareOnce(model: ResolvedModel, layers: number, onBuild?: () => void): Promise<PreparedModel> {
  const dir = model.entryDir;
  const root = dirname(dir);
  const cached = goodEntry(dir);
  if (cached) return { dir, built: false, tiedHead: cached.tiedHead, quantizedProducts: cached.quantizedProducts, headsRefused: cached.headsRefused, attributionRefused: cached.attributionRefused };
  onBuild?.();
  mkdirSync(root, { recursive: true });
  removeStaleTemporaries(root);
  const tmp = temporaryPath(dir);
  try {
    const { tiedHead, quantizedProducts, headsRefused, attributionRefused } = await buildInWorker({
      modelDir: model.dir, dtype: model.dtype, onnx: model.onnx, config: model.config, layers, tmp, env: { LENS_ALIGNED_COPY: model.env.LENS_ALIGNED_COPY },
    });
    for (let attempt = 0; ; attempt++) {
      try {
        commitTemporary(tmp, dir);
        return { dir, built: true, tiedHead, quantizedProducts, headsRefused, attributionRefused };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        const theirs = goodEntry(dir);
        if (theirs) return { dir, built: false, tiedHead: theirs.tiedHead, quantizedProducts: theirs.quantizedProducts, headsRefused: theirs.headsRefused, attributionRefused: theirs.attributionRefused }; // another process finished first
        if (attempt > 0) throw error;
        discardEntry(dir);
      }
    }
  } finally {
    discardTemporary(tmp);
  }
}

/** The cache entry's directory for a model: <cache root>/lens/<key of the source's content> (read it as ResolvedModel.entryDir). */
export function entryDirFor(model: ResolvedModel): string {
  return join(model.cacheRoot, 'lens', sourceKey(model));
}

/** Whether a complete, undamaged entry of `model` is in its place now. */
export function entryReady(model: ResolvedModel): boolean {
  return goodEntry(model.entryDir) !== undefined;
}

/** Moves a broken entry aside and deletes it (renaming first, so no reader sees it half deleted). */
export function discardEntry(dir: string): void {
  const trash = temporaryPath(dir);
  try { renameSync(dir, trash); } catch { /* already moved by another process */ }
  discardTemporary(trash);
}

/** What the worker builds from: the resolved model's parts (plain data: it crosses to a worker thread). */
export interface BuildJob { modelDir: string; dtype: Dtype; onnx: string; config: Record<string, unknown>; layers: number; tmp: string; env?: Record<string, string | undefined> }

/**
 * Builds an entry in a worker thread: the source protobuf (as large as the model) is read there
 * and freed with the worker, before the main thread maps the rewritten model.
 */
function buildInWorker(job: BuildJob): Promise<BuiltEntry> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(new URL('./prepare-worker.js', import.meta.url), { workerData: job });
    let outcome: ({ ok: true } & BuiltEntry) | { ok: false; message: string; hint?: string; user: boolean; stack?: string } | undefined;
    worker.on('message', (m) => (outcome = m));
    worker.on('error', reject);
    worker.on('exit', () => {
      if (outcome?.ok) resolvePromise({ tiedHead: outcome.tiedHead, quantizedProducts: outcome.quantizedProducts, headsRefused: outcome.headsRefused, attributionRefused: outcome.attributionRefused });
      else if (outcome && outcome.user) reject(new UserError(outcome.message, outcome.hint));
      else if (outcome) reject(Object.assign(new Error(outcome.message), { stack: outcome.stack }));
      else reject(new Error('the model preparation worker stopped without a result'));
    });
  });
}

/** Decodes an ONNX file. Throws UserError when it cannot be read or parsed. */
export function readModel(path: string): Model {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return decodeModel(bytes);
  } catch (error) {
    throw new UserError(`${path} is not a readable ONNX model (truncated or corrupt: ${(error as Error).message})`);
  }
}

const ELEMENT_BYTES: Record<number, number> = { [DataType.FLOAT]: 4, [DataType.FLOAT16]: 2 };

/** Compares two stored matrices element by element, bit for bit: is `a` [d, V] the transpose of `b` [V, d]? */
export function transposeCheck(reader: ExternalDataReader): TransposeCheck {
  const elements = (t: Tensor): Uint32Array | Uint16Array | undefined => {
    const size = ELEMENT_BYTES[t.data_type];
    const raw = isExternal(t) ? reader.read(t) : t.raw_data;
    if (!size || !raw) return undefined;
    const bytes = raw.byteOffset % size === 0 ? raw : new Uint8Array(raw); // a copy: Buffer.slice would be a view
    return size === 4 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  };
  return (a, b) => {
    const [rows, cols] = a.dims.map(Number);
    const x = elements(a), y = elements(b);
    if (!x || !y || x.length !== rows * cols || y.length !== x.length) return false;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) if (x[i * cols + j] !== y[j * rows + i]) return false;
    return true;
  };
}

/**
 * Hard-links a source data file into the entry (same bytes, no second copy on disk, and a path
 * inside the entry's folder, which onnxruntime requires: it refuses symlinks that lead out).
 * Returns false where a link can't be made (another filesystem, a file the user may not link).
 */
function linkSourceFile(sourcePath: string, linkPath: string): boolean {
  try {
    mkdirSync(dirname(linkPath), { recursive: true });
    linkSync(realpathSync(sourcePath), linkPath);
    return true;
  } catch {
    return false;
  }
}

/** What a build found that the runtime needs: whether the head is the tied embedding, why attribute has no parts or no head parts. */
export interface BuiltEntry { tiedHead: boolean; quantizedProducts: boolean; headsRefused?: string; attributionRefused?: string }

/** Builds a cache entry in `job.tmp` (run in the preparation worker); returns what it found (BuiltEntry). Throws UserError for unreadable models. */
export function buildEntry({ modelDir, dtype, onnx: onnxRel, config, layers, tmp, env = {} }: BuildJob): BuiltEntry {
  reachedPhase('before-first-write');
  const source = join(modelDir, onnxRel);
  const model = readModel(source);
  const reader = new ExternalDataReader(join(modelDir, 'onnx'));
  const weightError = (error: unknown) => {
    if ((error as NodeJS.ErrnoException).code || /external data/.test((error as Error).message)) {
      return new UserError(`cannot read the weights of ${source}: ${(error as Error).message}`);
    }
    return error;
  };
  let rewritten: Model;
  let tiedHead: boolean;
  const quantized = hasQuantizedProducts(model.graph);
  let headsRefused: string | undefined, attributionRefused: string | undefined;
  mkdirSync(join(tmp, 'onnx'), { recursive: true });
  const dataName = `${basename(onnxRel)}.data`;
  const linked = new Map<string, string | undefined>();
  let written = 0;
  // Source files onnxruntime could not map are copied page aligned (the policy decides), the rest linked.
  const alignedCopy = alignedCopyPolicy(unmappableFiles(model), tmp, env);
  const copied = new Set(alignedCopy?.copied ? alignedCopy.files : []);
  try {
    const result = addLensOutputs(model, layers, transposeCheck(reader));
    rewritten = result.model;
    tiedHead = result.tiedEmbedding !== undefined;
    headsRefused = result.headsRefused;
    attributionRefused = result.attributionRefused;
    layoutWeights(rewritten, {
      source: reader, dataPath: join(tmp, 'onnx', dataName), dataName,
      // The source's own data files are used where they are; only inline weights are copied.
      linked: (location) => {
        if (copied.has(location)) return undefined;
        if (!linked.has(location)) {
          const kept = `${SOURCE_LINKS}/${location.split('\\').join('/')}`;
          linked.set(location, linkSourceFile(join(modelDir, 'onnx', location), join(tmp, 'onnx', kept)) ? kept : undefined);
        }
        return linked.get(location);
      },
      onTensorWritten: () => { if (++written === 1) reachedPhase('mid-weights'); },
    });
  } catch (error) {
    if (error instanceof GraphStructureError) throw new UserError(`${source} is not a decoder lens can read: ${error.message}`);
    throw weightError(error);
  } finally {
    reader.close();
  }
  writeFileSync(join(tmp, onnxRel), encodeModel(rewritten));
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(entryConfig(config), null, 2));
  reachedPhase('before-marker');
  const links = [...linked.values()].filter((l): l is string => l !== undefined).map((l) => `onnx/${l}`);
  const files = Object.fromEntries([onnxRel, `onnx/${dataName}`, 'config.json', ...links].map((f) => [f, recordFile(join(tmp, f))]));
  const marker: EntryMarker = { version: REWRITE_VERSION, source: modelDir, dtype, tiedHead, quantizedProducts: quantized, ...(headsRefused ? { headsRefused } : {}), ...(attributionRefused ? { attributionRefused } : {}), files, ...(alignedCopy ? { alignedCopy } : {}) };
  writeFileSync(join(tmp, ENTRY_MARKER), JSON.stringify(marker));
  reachedPhase('before-commit');
  return { tiedHead, quantizedProducts: quantized, headsRefused, attributionRefused };
}
