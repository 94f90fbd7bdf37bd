// `lens cache`: list what $LENS_CACHE holds, remove a model's files, prune by age or size.
import { listCache, parseAge, parseSize, pruneCache, removeModel } from '../model/cache.js';
import type { Dtype } from '../model/paths.js';
import { formatBytes } from '../render/progress.js';
import { renderCacheListing, renderRemovals } from '../render/cache.js';
import { UserError } from '../errors.js';

/** The listing as text or one JSON object (no trailing newline). */
export function cacheList(json: boolean, env: NodeJS.ProcessEnv): string {
  const listing = listCache(env);
  if (!json) return renderCacheListing(listing, Date.now());
  return JSON.stringify({ ...listing, entries: listing.entries.map((e) => ({ ...e, lastUse: new Date(e.lastUse).toISOString() })) });
}

/** Removes a model's downloads and entries (of one dtype if given). Throws UserError when nothing could be removed. */
export function cacheRemove(model: string, dtype: Dtype | undefined, env: NodeJS.ProcessEnv): string {
  const removals = removeModel(model, dtype, env);
  const text = renderRemovals(removals);
  if (removals.every((r) => r.keptFor)) throw new UserError(text.split('\n')[0], 'it is removed once that run ends');
  return text;
}

/** Prunes by age and total size (default: unused for 30 days). Throws UserError for a bad age or size. */
export function cachePrune(options: { olderThan?: string; maxSize?: string }, env: NodeJS.ProcessEnv): string {
  const olderThan = options.olderThan ?? (options.maxSize === undefined ? '30d' : undefined);
  const { removals, totalBytes } = pruneCache({
    olderThanMs: olderThan === undefined ? undefined : parseAge(olderThan),
    maxBytes: options.maxSize === undefined ? undefined : parseSize(options.maxSize),
  }, env);
  const summary = `the cache now takes ${formatBytes(totalBytes)}`;
  return removals.length ? `${renderRemovals(removals)}\n${summary}` : `nothing to prune; ${summary}`;
}
