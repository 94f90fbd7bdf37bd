// The download progress line a terminal shows, and the sizes and ages `lens cache` prints.

/** A byte count in decimal units as people read them on disk: 512 B, 12.3 kB, 4.1 MB, 2.35 GB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** A duration in whole seconds, minutes or hours: 42s, 3m05s, 2h10m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export interface DownloadProgress {
  file: string;
  /** Bytes of the file on disk (resumed ones included) and its size, when known. */
  done: number;
  total?: number;
  /** Bytes per second received in this run (undefined before there is a rate to speak of). */
  rate?: number;
  /** The whole download: bytes on disk and the size, when every file's is known. */
  overall?: { done: number; total?: number };
}

/** One progress line: `downloading FILE: 1.2/3.4 MB 35% 2.10 MB/s ETA 1s · all 12/40 MB 30% ETA 13s`. */
export function formatDownloadProgress(p: DownloadProgress): string {
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const eta = (left: number) => (p.rate && p.rate > 0 ? ` ETA ${formatDuration(left / p.rate)}` : '');
  let line = `downloading ${p.file}: ${mb(p.done)}${p.total !== undefined ? `/${mb(p.total)}` : ''} MB`;
  if (p.total) line += ` ${Math.floor((p.done / p.total) * 100)}%`;
  if (p.rate !== undefined) line += ` ${formatBytes(p.rate)}/s`;
  if (p.total !== undefined) line += eta(p.total - p.done);
  const all = p.overall;
  if (all && all.total !== undefined && all.total !== p.total) {
    line += ` · all ${mb(all.done)}/${mb(all.total)} MB ${all.total ? Math.floor((all.done / all.total) * 100) : 100}%${eta(all.total - all.done)}`;
  }
  return line;
}
