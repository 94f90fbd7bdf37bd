// What $LENS_CACHE holds and removing parts of it: downloads (hub/<org>/<name>[@revision]) and
// rewritten entries (lens/<key>). Sizes are what the files take on disk, each file counted once
// however many hard links it has (an entry links the downloaded weights it uses). Nothing is
// removed that a live lens process holds (lease.ts), nothing outside $LENS_CACHE, and never the
// Hugging Face cache, which lens only reads.
import { lstatSync, readdirSync, readFileSync, realpathSync, rmSync, type Stats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { UserError } from '../errors.js';
import { COMPLETE_MARKER, huggingFaceCache, modelFiles, readMarker } from './hub.js';
import { directoryUsers, lastUse, removeDirectory, withRemovalLock } from './lease.js';
import { cacheRoot, DTYPE_SUFFIX, onnxFileFor, type Dtype } from './paths.js';
import { ENTRY_MARKER, type EntryMarker } from './prepare.js';
import { writeAtomically } from './atomic.js';
import { BASE_FILES } from './files.js';

export interface CacheEntry {
  /** A download from the hub, or a rewritten model of lens. */
  kind: 'download' | 'lens';
  /** The hub repo id, or for an entry built from a local directory, that directory. */
  model: string;
  /** The hub revision (a download, or an entry built from one); undefined for a local directory. */
  revision?: string;
  /** The dtypes it holds (a download may hold several; an entry is of one). */
  dtypes: Dtype[];
  /** Its directory. */
  path: string;
  /** Bytes on disk of its files and folders, each file once (as du counts). */
  bytes: number;
  /** Of those, bytes of files also linked from elsewhere (another entry, a download, the Hugging Face cache): not freed by removing it. */
  sharedBytes: number;
  /** Last use by lens, ms since the epoch. */
  lastUse: number;
  /** Live lens processes using it now. */
  users: number[];
  /** False for a download still under way or cut (partial files, no record of completion). */
  complete: boolean;
  /** A rewritten entry whose source weights onnxruntime could not map: copied page aligned (bytes), or left linked and why. */
  alignedCopy?: { bytes: number; copied: boolean; reason?: string };
}

export interface CacheListing {
  root: string;
  entries: CacheEntry[];
  /** Bytes on disk under the cache, each file once. */
  totalBytes: number;
}

const HUB_SNAPSHOT = /models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]([0-9a-f]{40})/;

/** Subdirectories of `dir` that are real directories (no symlinks: nothing outside the cache is reached). */
function subdirectories(dir: string): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  return names.filter((n) => !n.includes('.tmp-') && lstatSync(join(dir, n)).isDirectory()).map((n) => join(dir, n));
}

/** The stats of `dir` and of everything under it, symlinks not followed (what du counts). */
function statsUnder(dir: string): Stats[] {
  const out: Stats[] = [];
  // A file that vanishes meanwhile (a download renaming its partial, another removal) is skipped.
  const walk = (path: string) => {
    let stats: Stats;
    try { stats = lstatSync(path); } catch { return; }
    out.push(stats);
    if (!stats.isDirectory()) return;
    let names: string[] = [];
    try { names = readdirSync(path); } catch { /* gone */ }
    for (const name of names) walk(join(path, name));
  };
  walk(dir);
  return out;
}

/** What a download or entry was made from: the repo id and revision, read from where its files live. */
function describeSource(root: string, source: string): { model: string; revision?: string } {
  const inHub = relative(join(root, 'hub'), source);
  if (!inHub.startsWith('..') && inHub.split(sep).length === 2) return hubName(inHub.split(sep).join('/'));
  const snapshot = HUB_SNAPSHOT.exec(source);
  if (snapshot) return { model: `${snapshot[1]}/${snapshot[2]}`, revision: snapshot[3] };
  return { model: source };
}

/** `org/name` or `org/name@revision` (as downloads are named) → repo id and revision. */
function hubName(name: string): { model: string; revision: string } {
  const at = name.indexOf('@');
  return at < 0 ? { model: name, revision: 'main' } : { model: name.slice(0, at), revision: decodeURIComponent(name.slice(at + 1)) };
}

function downloadDtypes(dir: string): Dtype[] {
  const marker = readMarker(dir);
  return (Object.keys(DTYPE_SUFFIX) as Dtype[]).filter((dtype) => typeof marker[onnxFileFor(dtype)] === 'number');
}

/** Lists the cache under $LENS_CACHE: downloads and rewritten entries, sizes on disk and last use. */
export function listCache(env: NodeJS.ProcessEnv = process.env): CacheListing {
  const root = cacheRoot(env);
  const found: Omit<CacheEntry, 'bytes' | 'sharedBytes'>[] = [];
  for (const org of subdirectories(join(root, 'hub'))) {
    for (const dir of subdirectories(org)) {
      const { model, revision } = hubName(relative(join(root, 'hub'), dir).split(sep).join('/'));
      let complete = true;
      try { readFileSync(join(dir, COMPLETE_MARKER)); } catch { complete = false; }
      found.push({ kind: 'download', model, revision, dtypes: downloadDtypes(dir), path: dir, lastUse: lastUse(dir), users: directoryUsers(dir), complete });
    }
  }
  for (const dir of subdirectories(join(root, 'lens'))) {
    let marker: EntryMarker | undefined;
    try { marker = JSON.parse(readFileSync(join(dir, ENTRY_MARKER), 'utf8')) as EntryMarker; } catch { /* listed as incomplete */ }
    const source = marker ? describeSource(root, marker.source) : { model: '?' };
    const aligned = marker?.alignedCopy;
    found.push({ kind: 'lens', ...source, dtypes: marker ? [marker.dtype] : [], path: dir, lastUse: lastUse(dir), users: directoryUsers(dir), complete: marker !== undefined, ...(aligned ? { alignedCopy: { bytes: aligned.bytes, copied: aligned.copied, reason: aligned.reason } } : {}) });
  }
  // Each file (device and inode) counted once: in the total, and as shared when linked from outside the entry.
  const seen = new Map<string, { blocks: number; links: number; nlink: number }>();
  const perEntry = found.map((entry) => {
    const inodes = new Map<string, number>();
    for (const stats of statsUnder(entry.path)) {
      const id = `${stats.dev}:${stats.ino}`;
      inodes.set(id, (inodes.get(id) ?? 0) + 1);
      // A directory's link count counts its subdirectories' "..": only files are ever shared.
      const known = seen.get(id) ?? { blocks: stats.blocks * 512, links: 0, nlink: stats.isDirectory() ? 1 : stats.nlink };
      known.links++;
      seen.set(id, known);
    }
    return inodes;
  });
  const entries = found.map((entry, i) => {
    let bytes = 0, sharedBytes = 0;
    for (const [id, links] of perEntry[i]) {
      const { blocks, nlink } = seen.get(id)!;
      bytes += blocks;
      if (nlink > links) sharedBytes += blocks;
    }
    return { ...entry, bytes, sharedBytes };
  });
  const totalBytes = [...seen.values()].reduce((sum, { blocks }) => sum + blocks, 0);
  return { root, entries, totalBytes };
}

/** Refuses to remove anything when the Hugging Face cache and ours overlap (lens never writes to theirs). Throws UserError. */
function checkRemovable(root: string, env: NodeJS.ProcessEnv): void {
  const real = (path: string) => { try { return realpathSync(path); } catch { return path; } };
  const ours = real(root), theirs = real(huggingFaceCache(env));
  const inside = (a: string, b: string) => a === b || a.startsWith(`${b}${sep}`);
  if (inside(ours, theirs) || inside(theirs, ours)) {
    throw new UserError(`the lens cache ${root} overlaps the Hugging Face cache ${theirs}; lens removes nothing there`, 'set LENS_CACHE to a directory of its own');
  }
}

/** Whether `path` is a directory of the cache's own (inside the root once symlinks are resolved). */
function insideRoot(root: string, path: string): boolean {
  try {
    return realpathSync(path).startsWith(`${realpathSync(root)}${sep}`) && !lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

export interface Removal {
  entry: CacheEntry;
  /** Set when it was left in place: the processes using it. */
  keptFor?: number[];
  /** For a download of several dtypes, the dtype whose files were removed (the rest kept). */
  dtypeOnly?: Dtype;
}

/** Removes one entry (or, with `dtype`, only that dtype's files from a download of several), unless in use. */
function removeEntry(root: string, entry: CacheEntry, dtype: Dtype | undefined): Removal {
  if (!insideRoot(root, entry.path)) throw new UserError(`refusing to remove ${entry.path}: it is not inside the lens cache ${root}`);
  if (entry.kind === 'download' && dtype !== undefined && entry.dtypes.some((d) => d !== dtype)) {
    const users = withRemovalLock(entry.path, () => {
      const files = modelFiles(entry.path, dtype).filter((f) => !(BASE_FILES as readonly string[]).includes(f));
      const marker = readMarker(entry.path);
      for (const file of files) { delete marker[file]; rmSync(join(entry.path, file), { force: true }); }
      writeAtomically(join(entry.path, COMPLETE_MARKER), JSON.stringify(marker));
    });
    return users.length ? { entry, keptFor: users } : { entry, dtypeOnly: dtype };
  }
  const users = removeDirectory(entry.path);
  return users.length ? { entry, keptFor: users } : { entry };
}

/** Removes what the cache holds of `model` (a repo id, or the directory an entry was built from), optionally of one dtype. Throws UserError when there is nothing. */
export function removeModel(model: string, dtype: Dtype | undefined, env: NodeJS.ProcessEnv = process.env): Removal[] {
  const { root, entries } = listCache(env);
  checkRemovable(root, env);
  const matches = entries.filter((e) => (e.model === model || `${e.model}@${e.revision}` === model) && (dtype === undefined || e.dtypes.includes(dtype) || !e.complete));
  if (matches.length === 0) {
    throw new UserError(`the lens cache ${root} holds nothing of ${model}${dtype ? ` in ${dtype}` : ''}`, 'lens cache lists what it holds');
  }
  return matches.map((entry) => removeEntry(root, entry, dtype));
}

export interface PruneOptions {
  /** Remove what was last used longer ago than this (ms). */
  olderThanMs?: number;
  /** Then remove the least recently used until the cache takes at most this many bytes. */
  maxBytes?: number;
  now?: number;
}

/** Removes entries unused for longer than `olderThanMs`, then the least recently used until the cache fits `maxBytes`; entries in use are kept. */
export function pruneCache(options: PruneOptions, env: NodeJS.ProcessEnv = process.env): { removals: Removal[]; totalBytes: number } {
  const now = options.now ?? Date.now();
  let listing = listCache(env);
  checkRemovable(listing.root, env);
  const removals: Removal[] = [];
  const tried = new Set<string>();
  if (options.olderThanMs !== undefined) {
    for (const entry of listing.entries.filter((e) => now - e.lastUse > options.olderThanMs!)) {
      tried.add(entry.path);
      removals.push(removeEntry(listing.root, entry, undefined));
    }
    listing = listCache(env);
  }
  if (options.maxBytes !== undefined) {
    while (listing.totalBytes > options.maxBytes) {
      const next = listing.entries.filter((e) => !tried.has(e.path)).sort((a, b) => a.lastUse - b.lastUse)[0];
      if (!next) break;
      tried.add(next.path);
      removals.push(removeEntry(listing.root, next, undefined));
      listing = listCache(env);
    }
  }
  return { removals, totalBytes: listing.totalBytes };
}

/** A user's size in bytes: 20GB, 500 MB, 1.5GiB (decimal units, or binary with i), 1000 (bytes). Throws UserError. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kKMGT]i?B?|B)?\s*$/.exec(text);
  if (!match) throw new UserError(`not a size: ${JSON.stringify(text)}`, 'give a size such as 20GB, 500MB or 2GiB', 2);
  const unit = (match[2] ?? 'B').toUpperCase().replace(/B$/, '');
  const power = { '': 0, K: 1, M: 2, G: 3, T: 4 }[unit.replace('I', '')] ?? 0;
  return Math.floor(Number(match[1]) * (unit.endsWith('I') ? 1024 : 1000) ** power);
}

/** A user's age: 30d, 12h, 2w, 90m, 45s. Throws UserError. */
export function parseAge(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$/.exec(text);
  if (!match) throw new UserError(`not an age: ${JSON.stringify(text)}`, 'give an age such as 30d, 12h or 2w', 2);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[match[2] as 's']!;
  return Number(match[1]) * unit * 1000;
}
