// --tuned-lens SRC: a directory as it is, or the name of a lens in tuned-lens's Hugging Face Space
// (lens/<name>/config.json and params.pt), downloaded once into the cache and checked before it is kept.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { readTunedLensDir, type TunedLens } from '../tuned/lens-dir.js';
import { writeAtomically } from './atomic.js';
import { HttpFailure } from './download.js';
import { downloadFile, looksLikePath, type ResolvedModel, type ResolveOptions } from './hub.js';
import { tunedLensNameCandidates } from '../tuned/lens-names.js';
import { cacheRoot, hubEndpoint } from './paths.js';

/** Where tuned-lens publishes its lenses: a Space, one folder per model under lens/. */
export const TUNED_LENS_SPACE = 'spaces/AlignmentResearch/tuned-lens';
const LENS_FILES = ['config.json', 'params.pt'] as const;
const COMPLETE_MARKER = '.lens-complete.json';
// The Space's folders are model names: `gpt2`, or `org/name` as on the hub.
const LENS_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)?$/;

/** Whether every lens file in `dir` is as the marker recorded it when the download was checked. */
function complete(dir: string): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(dir, COMPLETE_MARKER), 'utf8')) as Record<string, number>;
    return LENS_FILES.every((file) => statSync(join(dir, file)).size === marker[file]);
  } catch {
    return false;
  }
}

/**
 * The tuned lens SRC names: a local directory, or a lens of the Space downloaded into
 * $LENS_CACHE/tuned-lens/<name> ($HF_ENDPOINT, HF_TOKEN and offline mode as for models). A download
 * that does not read as a lens is removed, not cached. Throws UserError.
 */
export async function loadTunedLens(src: string, options: Pick<ResolveOptions, 'offline' | 'env' | 'progress' | 'signal'>): Promise<TunedLens> {
  if (looksLikePath(src)) return readTunedLensDir(src);
  if (!LENS_NAME.test(src) || src.split('/').some((part) => part.startsWith('.'))) {
    throw new UserError(`--tuned-lens ${JSON.stringify(src)} is neither a directory nor a lens name`, 'give a directory, or a name like gpt2 from the tuned-lens Space', 2);
  }
  const env = options.env ?? process.env;
  const lens = await spaceLens(src, { ...options, env, cacheRoot: cacheRoot(env) });
  if (lens === 'offline') {
    throw new UserError(`tuned lens ${src} is not in the cache and the network is off (offline mode)`, 'run once with network access, or download its config.json and params.pt and pass the directory');
  }
  if (lens === 'not published') throw new UserError(`the tuned-lens Space has no lens/${src}/config.json (HTTP 404)`, 'see the Space\'s lens/ folder for the names it publishes');
  return lens;
}

/** Where and how a lens of the Space is fetched: lens's cache root, the environment (hub address, token), offline mode, progress, cancellation. */
interface SpaceOptions { cacheRoot: string; env: NodeJS.ProcessEnv; offline: boolean; progress?: ResolveOptions['progress']; signal?: AbortSignal }

/**
 * The tuned lens of the Space folder `name`, from the cache or downloaded into
 * <cache root>/tuned-lens/<name>; 'offline' when it is not cached and the network is off, 'not
 * published' when the Space answers 404. A download that does not read as a lens is removed.
 * Throws UserError on other download failures and damaged files.
 */
async function spaceLens(name: string, options: SpaceOptions): Promise<TunedLens | 'offline' | 'not published'> {
  const { env } = options;
  const dir = join(options.cacheRoot, 'tuned-lens', ...name.split('/'));
  if (complete(dir)) return readTunedLensDir(dir);
  if (options.offline) return 'offline';
  mkdirSync(dir, { recursive: true });
  const sizes: Record<string, number> = {};
  try {
    for (const file of LENS_FILES) {
      sizes[file] = await downloadFile(`${hubEndpoint(env)}/${TUNED_LENS_SPACE}/resolve/main/lens/${name}/${file}`, join(dir, file), env, options.progress, `lens/${name}/${file}`, options.signal);
    }
    const lens = readTunedLensDir(dir);
    writeAtomically(join(dir, COMPLETE_MARKER), JSON.stringify(sizes));
    return lens;
  } catch (error) {
    for (const file of LENS_FILES) if (existsSync(join(dir, file))) rmSync(join(dir, file), { force: true });
    if (error instanceof HttpFailure && error.status === 404 && sizes['config.json'] === undefined) {
      rmSync(dir, { recursive: true, force: true });
      return 'not published';
    }
    throw error;
  }
}

/**
 * The Space's tuned lens for a resolved model (no --tuned-lens given): tries the names its id and
 * config.json's `_name_or_path` suggest (tunedLensNameCandidates) in turn, the first one cached or
 * published wins; fetched under the model's cache root and environment. Throws a UserError listing
 * the names tried when none is published.
 */
export async function findTunedLensFor(model: ResolvedModel, options: Pick<ResolveOptions, 'offline' | 'progress' | 'signal'>): Promise<TunedLens> {
  const modelSpec = model.id;
  const nameOrPath = typeof model.config._name_or_path === 'string' ? model.config._name_or_path : undefined;
  const names = tunedLensNameCandidates([modelSpec, nameOrPath]);
  const offline: string[] = [];
  for (const name of names) {
    const lens = await spaceLens(name, { cacheRoot: model.cacheRoot, env: model.env, offline: options.offline, progress: options.progress, signal: options.signal });
    if (lens === 'offline') offline.push(name);
    else if (lens !== 'not published') return lens;
  }
  const tried = names.join(', ') || 'none';
  if (offline.length > 0) throw new UserError(`no tuned lens for ${modelSpec} in the cache and the network is off (offline mode); tried ${tried}`, 'run once with network access, or pass --tuned-lens DIR|NAME');
  throw new UserError(`the tuned-lens Space has no lens for ${modelSpec}; tried ${tried}`, 'pass --tuned-lens DIR|NAME (a directory, or the Space folder name)');
}
