// Resolving --model to a local directory: a directory as it is, or a hub repo id downloaded
// once into the cache. Every file is written under a temporary name and renamed into place.
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { commitTemporary, discardTemporary, removeStaleTemporaries, temporaryPath, writeAtomically } from './atomic.js';
import { cacheRoot, hubEndpoint, onnxFileFor, type Dtype } from './paths.js';

export interface ResolvedModel {
  /** The model's directory in the hub layout. */
  dir: string;
  /** What the user named (a repo id or the directory). */
  id: string;
  /** Downloaded into the cache: its files never change in place (a new download replaces them whole). */
  downloaded: boolean;
}

export interface ResolveOptions {
  dtype: Dtype;
  offline: boolean;
  env?: NodeJS.ProcessEnv;
  /** Called with progress lines for a terminal; absent when progress is not shown. */
  progress?: (done: number, total: number | undefined, file: string) => void;
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** A download that receives nothing for this long is abandoned ($LENS_STALL_TIMEOUT_MS overrides). */
const STALL_MS = 15_000;
const COMPLETE_MARKER = '.lens-complete.json';

/** Whether a --model value names a local directory rather than a hub repo id. */
function looksLikePath(spec: string): boolean {
  return spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('~') || spec.includes('\\') || existsSync(spec);
}

/** The files lens reads from a model, relative to its directory; `optional` ones may be missing. */
export function modelFiles(dtype: Dtype): { required: string[]; optional: string[] } {
  const onnx = onnxFileFor(dtype);
  return { required: ['config.json', 'tokenizer.json', 'tokenizer_config.json', onnx], optional: [`${onnx}_data`] };
}

/** Resolves --model to a directory, downloading a hub model on first use. Throws UserError. */
export async function resolveModel(spec: string, options: ResolveOptions): Promise<ResolvedModel> {
  if (looksLikePath(spec)) return { dir: localDirectory(spec, options.dtype), id: spec, downloaded: false };
  if (!REPO_ID.test(spec) || spec.split('/').some((part) => part === '.' || part === '..' || part.startsWith('.'))) {
    throw new UserError(`not a model directory or a hub repo id: ${JSON.stringify(spec)}`, 'give a directory path or an id like Xenova/gpt2', 2);
  }
  const dir = join(cacheRoot(options.env), 'hub', ...spec.split('/'));
  if (cachedComplete(dir, options.dtype)) return { dir, id: spec, downloaded: true };
  if (options.offline) {
    throw new UserError(`model ${spec} is not in the cache and the network is off (offline mode)`,
      `run once with network access (lens topk --model ${spec} "hello"), or copy the model directory and pass it with --model DIR`);
  }
  await download(spec, dir, options);
  return { dir, id: spec, downloaded: true };
}

function localDirectory(spec: string, dtype: Dtype): string {
  const dir = resolve(spec.replace(/^~(?=$|\/)/, process.env.HOME ?? '~'));
  let isDir = false;
  try { isDir = statSync(dir).isDirectory(); } catch { /* reported below */ }
  if (!isDir) throw new UserError(`model directory not found: ${spec}`, 'pass a directory with config.json, tokenizer.json and onnx/model.onnx');
  for (const file of modelFiles(dtype).required) {
    if (!existsSync(join(dir, file))) throw new UserError(`model directory ${spec} has no ${file}`, dtype === 'fp32' ? undefined : `--dtype ${dtype} reads ${file}`);
  }
  return dir;
}

function cachedComplete(dir: string, dtype: Dtype): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(dir, COMPLETE_MARKER), 'utf8')) as Record<string, number | null>;
    const { required, optional } = modelFiles(dtype);
    return [...required, ...optional].every((f) => f in marker && (marker[f] === null || statSync(join(dir, f)).size === marker[f]));
  } catch {
    return false;
  }
}

async function download(repo: string, dir: string, options: ResolveOptions): Promise<void> {
  const env = options.env ?? process.env;
  const { required, optional } = modelFiles(options.dtype);
  let marker: Record<string, number | null> = {};
  try { marker = JSON.parse(readFileSync(join(dir, COMPLETE_MARKER), 'utf8')); } catch { /* first download */ }
  for (const file of [...required, ...optional]) {
    const dest = join(dir, file);
    removeStaleTemporaries(dirname(dest));
    if (file in marker && (marker[file] === null || (existsSync(dest) && statSync(dest).size === marker[file]))) continue;
    const url = `${hubEndpoint(env)}/${repo}/resolve/main/${file}`;
    const size = await downloadFile(url, dest, env, options.progress, file, !required.includes(file));
    marker[file] = size;
  }
  writeAtomically(join(dir, COMPLETE_MARKER), JSON.stringify(marker));
}

/** Downloads one file; returns its size, or null for a missing optional file. Throws UserError. */
async function downloadFile(url: string, dest: string, env: NodeJS.ProcessEnv, progress: ResolveOptions['progress'], file: string, optional: boolean): Promise<number | null> {
  const stallMs = Number(env.LENS_STALL_TIMEOUT_MS) > 0 ? Number(env.LENS_STALL_TIMEOUT_MS) : STALL_MS;
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), stallMs);
  const touch = () => { clearTimeout(timer); timer = setTimeout(() => controller.abort(), stallMs); };
  const headers: Record<string, string> = { 'user-agent': 'lens' };
  if (env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = temporaryPath(dest);
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers, signal: controller.signal, redirect: 'follow' });
    } catch (error) {
      throw new UserError(`cannot reach the hub at ${new URL(url).origin} for ${file}: ${describeFetchError(error, controller, stallMs)}`, 'check the network, HF_ENDPOINT, or use --offline with a cached model');
    }
    if (response.status === 404 && optional) { await response.body?.cancel(); return null; }
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      const why = response.status === 401 || response.status === 403 ? ' (set HF_TOKEN for gated or private models)' : '';
      throw new UserError(`download of ${file} failed: HTTP ${response.status} from ${url}${why}`);
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    const total = Number.isFinite(declared) ? declared : undefined;
    const out = createWriteStream(tmp);
    let received = 0;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        touch();
        received += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        progress?.(received, total, file);
      }
    } catch (error) {
      throw new UserError(`download of ${file} was interrupted: ${describeFetchError(error, controller, stallMs)}`, 'run the command again to retry');
    } finally {
      await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
    }
    if (total !== undefined && received !== total) {
      throw new UserError(`download of ${file} was cut short (${received} of ${total} bytes)`, 'run the command again to retry');
    }
    commitTemporary(tmp, dest);
    return received;
  } finally {
    clearTimeout(timer);
    discardTemporary(tmp);
  }
}

function describeFetchError(error: unknown, controller: AbortController, stallMs: number): string {
  if (controller.signal.aborted) return `no data for ${stallMs / 1000} s`;
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (error as Error)?.message ?? String(error);
}
