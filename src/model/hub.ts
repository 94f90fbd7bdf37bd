// Resolving --model to a local directory: a directory as it is, or a hub repo id downloaded
// once into the cache (resumable and verified: download.ts). Nothing half-written is ever in place.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { removeStaleTemporaries, writeAtomically } from './atomic.js';
import { downloadVerified, publishedFile, type PublishedFile } from './download.js';
import { holdDirectory, waitWhileRemoved } from './lease.js';
import { readConfigFile } from './architecture.js';
import { BASE_FILES, dataFiles, declaredDataFiles, firstMissing } from './files.js';
import { cacheRoot, hubEndpoint, onnxFileFor, type Dtype } from './paths.js';
import { resolvedModel, type KnownFiles, type ResolvedModel } from './resolved.js';

export type { ResolvedModel } from './resolved.js';

export interface ResolveOptions {
  dtype: Dtype;
  offline: boolean;
  /** The hub revision (branch, tag or commit) of a repo id; default main. */
  revision?: string;
  env?: NodeJS.ProcessEnv;
  /** Cancels a download under way (the files so far are kept to resume). */
  signal?: AbortSignal;
  /** Called as a file arrives, with its bytes on disk, its size and the whole download's; absent when progress is not shown. */
  progress?: (done: number, total: number | undefined, file: string, overall?: { done: number; total?: number }) => void;
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/;
const COMMIT = /^[0-9a-f]{40}$/;
/** A download that receives nothing for this long is abandoned ($LENS_STALL_TIMEOUT_MS overrides). */
const STALL_MS = 15_000;
/** Concurrent Range requests for one large file ($LENS_DOWNLOAD_CONNECTIONS overrides, 1 = one stream). */
const CONNECTIONS = 4;
/** Files from this size on are fetched in ranges ($LENS_PARALLEL_MIN_BYTES overrides). */
const PARALLEL_MIN_BYTES = 64 << 20;
/** The file of a download that records its complete files and their sizes. */
export const COMPLETE_MARKER = '.lens-complete.json';

/** Whether a --model (or --tuned-lens) value names a local directory rather than a name on the hub. */
export function looksLikePath(spec: string): boolean {
  return spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('~') || spec.includes('\\') || existsSync(spec);
}

/** A model directory's config.json. Throws UserError. */
const readConfig = (dir: string) => readConfigFile(join(dir, 'config.json'));

/** Every file lens reads from a model directory for a dtype, relative to it: config, tokenizer, the ONNX file and its data files. Throws UserError. */
export function modelFiles(dir: string, dtype: Dtype): string[] {
  return allFiles(dtype, sourceFiles(dir, dtype));
}

/** The config and data files of a model directory for a dtype. Throws UserError. */
function sourceFiles(dir: string, dtype: Dtype): Required<KnownFiles> {
  const config = readConfig(dir);
  return { config, dataFiles: dataFiles(dir, config, dtype) };
}

const allFiles = (dtype: Dtype, known: Required<KnownFiles>) => [...BASE_FILES, onnxFileFor(dtype), ...known.dataFiles];

/**
 * Resolves --model once into the value preparation, the runtime and inspect share: a local
 * directory, a snapshot in the Hugging Face cache, or a download into ours. Throws UserError.
 */
export async function resolveModel(spec: string, options: ResolveOptions): Promise<ResolvedModel> {
  const revision = options.revision ?? 'main';
  const env = options.env ?? process.env;
  const { dtype } = options;
  const root = cacheRoot(env);
  const resolved = (dir: string, downloaded: boolean, known: KnownFiles) => resolvedModel({ id: spec, dir, dtype, revision, downloaded, env, cacheRoot: root }, known);
  if (looksLikePath(spec)) {
    if (revision !== 'main') throw new UserError(`--revision applies to hub repo ids, not to the directory ${spec}`, undefined, 2);
    const local = localDirectory(spec, dtype);
    return resolved(local.dir, false, { config: local.config });
  }
  if (!REPO_ID.test(spec) || spec.split('/').some((part) => part === '.' || part === '..' || part.startsWith('.'))) {
    throw new UserError(`not a model directory or a hub repo id: ${JSON.stringify(spec)}`, 'give a directory path or an id like Xenova/gpt2', 2);
  }
  if (!REVISION.test(revision) || revision.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new UserError(`not a revision: ${JSON.stringify(revision)}`, 'give a branch, tag or commit such as main', 2);
  }
  const snapshot = huggingFaceSnapshot(spec, revision, dtype, env);
  if (snapshot) return resolved(snapshot.dir, true, snapshot.known);
  const [org, name] = spec.split('/');
  const dir = join(root, 'hub', org, revision === 'main' ? name : `${name}@${encodeURIComponent(revision)}`);
  if (cachedComplete(dir, dtype)) {
    const known = holdDirectory(dir) && cachedComplete(dir, dtype);
    if (known) return resolved(dir, true, known);
    await waitWhileRemoved(dir); // `lens cache rm` is removing it: download it anew
  }
  if (options.offline) {
    throw new UserError(`model ${spec}${revision === 'main' ? '' : ` at ${revision}`} is not in the cache and the network is off (offline mode)`,
      `run once with network access (lens topk --model ${spec} "hello"), or copy the model directory and pass it with --model DIR`);
  }
  return resolved(dir, true, await download(spec, revision, dir, options));
}

/** A user's model directory and its config, once the files the dtype needs are found there. Throws UserError. */
function localDirectory(spec: string, dtype: Dtype): { dir: string; config: Record<string, unknown> } {
  const dir = resolve(spec.replace(/^~(?=$|\/)/, process.env.HOME ?? '~'));
  let isDir = false;
  try { isDir = statSync(dir).isDirectory(); } catch { /* reported below */ }
  if (!isDir) throw new UserError(`model directory not found: ${spec}`, 'pass a directory with config.json, tokenizer.json and onnx/model.onnx');
  const needed = [...BASE_FILES, onnxFileFor(dtype)];
  let missing = firstMissing(dir, needed);
  const config = missing ? {} : readConfig(dir);
  if (!missing) missing = firstMissing(dir, declaredDataFiles(config, dtype));
  if (missing) {
    const hint = missing.endsWith('.onnx') && dtype !== 'fp32' ? `--dtype ${dtype} reads ${missing}` : missing.includes('_data') ? 'config.json declares it in transformers.js_config.use_external_data_format' : undefined;
    throw new UserError(`model directory ${spec} has no ${missing}`, hint);
  }
  return { dir, config };
}

/** Where Python's huggingface_hub keeps downloads: $HF_HUB_CACHE, else $HF_HOME/hub, else ${XDG_CACHE_HOME:-~/.cache}/huggingface/hub. */
export function huggingFaceCache(env: NodeJS.ProcessEnv = process.env): string {
  const home = (path: string) => resolve(path.replace(/^~(?=$|\/)/, homedir()));
  if (env.HF_HUB_CACHE) return home(env.HF_HUB_CACHE);
  if (env.HUGGINGFACE_HUB_CACHE) return home(env.HUGGINGFACE_HUB_CACHE);
  if (env.HF_HOME) return join(home(env.HF_HOME), 'hub');
  return join(env.XDG_CACHE_HOME ? home(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'huggingface', 'hub');
}

/** The snapshot of `repo` at `revision` in the Hugging Face cache and its files, if it holds every file the dtype needs (read only, never written). */
function huggingFaceSnapshot(repo: string, revision: string, dtype: Dtype, env: NodeJS.ProcessEnv): { dir: string; known: KnownFiles } | undefined {
  const root = join(huggingFaceCache(env), `models--${repo.split('/').join('--')}`);
  try {
    const commit = COMMIT.test(revision) ? revision : readFileSync(join(root, 'refs', revision), 'utf8').trim();
    if (!COMMIT.test(commit)) return undefined;
    const dir = join(root, 'snapshots', commit);
    const known = sourceFiles(dir, dtype);
    return firstMissing(dir, allFiles(dtype, known)) === undefined ? { dir, known } : undefined;
  } catch {
    return undefined; // not there, or incomplete: fall back to our own cache
  }
}

/** A download's record of its complete files (file → size); empty when there is none. */
export function readMarker(dir: string): Record<string, number | null> {
  try {
    return JSON.parse(readFileSync(join(dir, COMPLETE_MARKER), 'utf8'));
  } catch {
    return {};
  }
}

/** Whether `file` of a download is complete: recorded in the marker with the size it has on disk. */
function haveFile(dir: string, marker: Record<string, number | null>, file: string): boolean {
  try {
    return typeof marker[file] === 'number' && statSync(join(dir, file)).size === marker[file];
  } catch {
    return false;
  }
}

/** The files of a complete download of the dtype in `dir`; undefined when any is missing or cut. */
function cachedComplete(dir: string, dtype: Dtype): Required<KnownFiles> | undefined {
  const marker = readMarker(dir);
  try {
    if (!haveFile(dir, marker, 'config.json') || !haveFile(dir, marker, onnxFileFor(dtype))) return undefined;
    const known = sourceFiles(dir, dtype);
    return allFiles(dtype, known).every((f) => haveFile(dir, marker, f)) ? known : undefined;
  } catch {
    return undefined;
  }
}

/** Downloads what the dtype needs and nothing else: config and tokenizer, the ONNX file, then the data files config.json declares and the graph names; returns those. */
async function download(repo: string, revision: string, dir: string, options: ResolveOptions): Promise<Required<KnownFiles>> {
  const env = options.env ?? process.env;
  mkdirSync(dir, { recursive: true });
  if (!holdDirectory(dir)) {
    await waitWhileRemoved(dir);
    mkdirSync(dir, { recursive: true });
    if (!holdDirectory(dir)) throw new UserError(`the cache directory ${dir} is being removed by another lens process`, 'run the command again');
  }
  const marker = readMarker(dir);
  const settings = { ...transferSettings(env), signal: options.signal };
  const { stallMs, headers, signal } = settings;
  let overallDone = 0;
  const fetchFiles = async (files: string[]) => {
    const wanted = files.filter((file) => !haveFile(dir, marker, file));
    // What the hub publishes for every file first: the sizes give the overall progress.
    const published: PublishedFile[] = [];
    for (const file of wanted) {
      removeStaleTemporaries(dirname(join(dir, file)));
      published.push(await publishedFile(file, `${hubEndpoint(env)}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`, { headers, stallMs, signal }));
    }
    const overallTotal = published.every((p) => p.size !== undefined) ? published.reduce((sum, p) => sum + p.size!, overallDone) : undefined;
    for (const item of published) {
      const before = overallDone;
      const onBytes = options.progress && ((done: number, total: number | undefined) => options.progress!(done, total, item.file, { done: before + done, total: overallTotal }));
      const size = await downloadVerified(item, join(dir, item.file), { ...settings, onBytes });
      marker[item.file] = size;
      overallDone = before + size;
    }
  };
  await fetchFiles([...BASE_FILES, onnxFileFor(options.dtype)]);
  const known = sourceFiles(dir, options.dtype);
  await fetchFiles(known.dataFiles);
  writeAtomically(join(dir, COMPLETE_MARKER), JSON.stringify(marker));
  return known;
}

/** The stall time and request headers every download uses ($LENS_STALL_TIMEOUT_MS, HF_TOKEN). */
function transferSettings(env: NodeJS.ProcessEnv): { stallMs: number; headers: Record<string, string>; connections: number; parallelMinBytes: number } {
  const stallMs = Number(env.LENS_STALL_TIMEOUT_MS) > 0 ? Number(env.LENS_STALL_TIMEOUT_MS) : STALL_MS;
  const connections = Number.isInteger(Number(env.LENS_DOWNLOAD_CONNECTIONS)) && Number(env.LENS_DOWNLOAD_CONNECTIONS) > 0 ? Math.min(16, Number(env.LENS_DOWNLOAD_CONNECTIONS)) : CONNECTIONS;
  const parallelMinBytes = env.LENS_PARALLEL_MIN_BYTES !== undefined && Number(env.LENS_PARALLEL_MIN_BYTES) >= 0 ? Number(env.LENS_PARALLEL_MIN_BYTES) : PARALLEL_MIN_BYTES;
  const headers: Record<string, string> = { 'user-agent': 'lens', 'accept-encoding': 'identity' };
  if (env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
  return { stallMs, headers, connections, parallelMinBytes };
}

/** Downloads one file to `dest`, resumable and verified as a model's files are (`signal` cancels it); returns its size. Throws UserError. */
export async function downloadFile(url: string, dest: string, env: NodeJS.ProcessEnv, progress: ResolveOptions['progress'], file: string, signal?: AbortSignal): Promise<number> {
  const settings = { ...transferSettings(env), signal };
  removeStaleTemporaries(dirname(dest));
  const published = await publishedFile(file, url, settings);
  const onBytes = progress && ((done: number, total: number | undefined) => progress(done, total, file, { done, total }));
  return downloadVerified(published, dest, { ...settings, onBytes });
}
