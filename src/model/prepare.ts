// The one-time preparation of a model for the lens: rewrite its ONNX graph to expose the
// residual stream and cache the result under $LENS_CACHE/lens/<key>, keyed by the source's
// content, built in a temporary directory and renamed into place (never half-written).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../errors.js';
import { addLensOutputs, GraphStructureError } from '../onnx/lens-graph.js';
import { moveWeightsToExternalData } from '../onnx/external-data.js';
import { decodeModel, encodeModel, type Model } from '../onnx/proto.js';
import { cacheRoot, onnxFileFor, type Dtype } from './paths.js';

/** Bumped whenever the rewrite changes, so older cache entries are not reused. */
const REWRITE_VERSION = 1;
const ENTRY_MARKER = 'lens-entry.json';
const SAMPLE_BYTES = 1 << 20;

export interface PreparedModel {
  /** The cache entry: a model directory in the hub layout holding the rewritten graph. */
  dir: string;
  /** Whether this call built it (false: it was cached). */
  built: boolean;
}

/** A fingerprint of the files a model's graph comes from: sizes, times and sampled bytes. */
function sourceKey(modelDir: string, dtype: Dtype): string {
  const hash = createHash('sha256').update(`lens-rewrite-${REWRITE_VERSION}\0${dtype}\0`);
  hash.update(readFileSync(join(modelDir, 'config.json')));
  const onnx = join(modelDir, onnxFileFor(dtype));
  for (const path of [onnx, `${onnx}_data`, `${onnx}.data`]) {
    if (!existsSync(path)) continue;
    const fd = openSync(path, 'r');
    try {
      const { size, mtimeMs } = fstatSync(fd);
      hash.update(`${basename(path)}\0${size}\0${mtimeMs}\0`);
      const sample = Buffer.alloc(Math.min(size, SAMPLE_BYTES));
      readSync(fd, sample, 0, sample.length, 0);
      hash.update(sample);
      readSync(fd, sample, 0, sample.length, Math.max(0, size - sample.length));
      hash.update(sample);
    } finally {
      closeSync(fd);
    }
  }
  return hash.digest('hex').slice(0, 32);
}

function entryIsGood(dir: string): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(dir, ENTRY_MARKER), 'utf8')) as { files: Record<string, number> };
    return Object.entries(marker.files).every(([file, size]) => statSync(join(dir, file)).size === size);
  } catch {
    return false;
  }
}

/** Returns the cached lens model for `modelDir`, building it first if needed. Throws UserError for unreadable models. */
export function prepareLensModel(modelDir: string, dtype: Dtype, layers: number, env: NodeJS.ProcessEnv = process.env, onBuild?: () => void): PreparedModel {
  const root = join(cacheRoot(env), 'lens');
  const dir = join(root, sourceKey(modelDir, dtype));
  if (entryIsGood(dir)) return { dir, built: false };
  onBuild?.();
  mkdirSync(root, { recursive: true });
  const tmp = join(root, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    buildEntry(modelDir, dtype, layers, tmp);
    for (let attempt = 0; ; attempt++) {
      try {
        renameSync(tmp, dir);
        return { dir, built: true };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        if (entryIsGood(dir)) return { dir, built: false }; // another process finished first
        if (attempt > 0) throw error;
        // A broken entry (a killed run from an older version, a damaged disk): move it aside and retry.
        const trash = join(root, `.trash-${process.pid}-${randomBytes(4).toString('hex')}`);
        try { renameSync(dir, trash); } catch { /* someone else moved it */ }
        rmSync(trash, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function readModel(path: string): Model {
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

function buildEntry(modelDir: string, dtype: Dtype, layers: number, tmp: string): void {
  const onnxRel = onnxFileFor(dtype);
  const source = join(modelDir, onnxRel);
  const model = readModel(source);
  let rewritten: Model;
  try {
    rewritten = addLensOutputs(model, layers).model;
  } catch (error) {
    if (error instanceof GraphStructureError) throw new UserError(`${source} is not a decoder lens can read: ${error.message}`);
    throw error;
  }
  mkdirSync(join(tmp, 'onnx'), { recursive: true });
  const dataName = `${basename(onnxRel)}.data`;
  try {
    moveWeightsToExternalData(rewritten, join(modelDir, 'onnx'), join(tmp, 'onnx', dataName), dataName);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code || /external data/.test((error as Error).message)) {
      throw new UserError(`cannot read the weights of ${source}: ${(error as Error).message}`);
    }
    throw error;
  }
  writeFileSync(join(tmp, onnxRel), encodeModel(rewritten));
  copyFileSync(join(modelDir, 'config.json'), join(tmp, 'config.json'));
  const files = Object.fromEntries([onnxRel, `onnx/${dataName}`, 'config.json'].map((f) => [f, statSync(join(tmp, f)).size]));
  writeFileSync(join(tmp, ENTRY_MARKER), JSON.stringify({ version: REWRITE_VERSION, source: modelDir, dtype, files }));
}
