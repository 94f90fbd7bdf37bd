// `lens cache` as text: one row per download or rewritten entry, and what a removal did.
import type { CacheListing, Removal } from '../model/cache.js';
import { formatBytes } from './progress.js';

/** How long ago, coarsely: just now, 5 min ago, 3 h ago, 12 d ago. */
export function formatAge(ms: number): string {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ago`;
  return `${Math.floor(minutes / 1440)} d ago`;
}

/** The listing as an aligned table under a one-line summary (no trailing newline). */
export function renderCacheListing(listing: CacheListing, now: number): string {
  const head = `${listing.root}: ${formatBytes(listing.totalBytes)} on disk (each file once), ${listing.entries.length} ${listing.entries.length === 1 ? 'entry' : 'entries'}`;
  if (listing.entries.length === 0) return head;
  const rows = [['KIND', 'MODEL', 'REVISION', 'DTYPE', 'SIZE', 'LAST USE', 'STATE']];
  for (const e of [...listing.entries].sort((a, b) => a.model.localeCompare(b.model) || a.kind.localeCompare(b.kind))) {
    const size = formatBytes(e.bytes) + (e.sharedBytes > 0 ? ` (${formatBytes(e.sharedBytes)} shared)` : '');
    const aligned = e.alignedCopy && (e.alignedCopy.copied ? `aligned copy of ${formatBytes(e.alignedCopy.bytes)}` : `unaligned weights linked (${e.alignedCopy.reason})`);
    const state = [e.complete ? '' : e.kind === 'download' ? 'incomplete' : 'damaged', e.users.length ? `in use (pid ${e.users.join(', ')})` : '', aligned ?? ''].filter(Boolean).join(', ');
    rows.push([e.kind === 'lens' ? 'rewritten' : 'download', e.model, e.revision ?? '-', e.dtypes.join(',') || '-', size, formatAge(now - e.lastUse), state]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return [head, ...rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ').trimEnd())].join('\n');
}

/** One line per removal: removed, or kept because a lens process uses it (no trailing newline). */
export function renderRemovals(removals: Removal[]): string {
  return removals.map(({ entry, keptFor, dtypeOnly }) => {
    const what = `${entry.kind === 'lens' ? 'rewritten' : 'download'} ${entry.model}${entry.revision && entry.revision !== 'main' ? `@${entry.revision}` : ''} ${dtypeOnly ?? (entry.dtypes.join(',') || '')}`.trimEnd();
    return keptFor ? `kept ${what}: in use by lens process ${keptFor.join(', ')}` : `removed ${what} (${formatBytes(entry.bytes - entry.sharedBytes)}${dtypeOnly ? ' or less' : ''})`;
  }).join('\n');
}
