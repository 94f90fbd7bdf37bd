// The record statistics of many positions (a heatmap's) on two threads: the rows are independent,
// and while they are computed the model is idle, so the second core would otherwise wait. Each
// row's sums run in the same order on either thread: the values are the same as on one.
import { Worker } from 'node:worker_threads';
import { siteStats, type SiteStats } from './record.js';

/** What the worker is sent: `positions` × `sites` logit rows of `vocab` floats, position-major, at the start of shared memory. */
export interface StatsJob { rows: SharedArrayBuffer; positions: number; sites: number; vocab: number; k: number }

/** Fewer logits than this are done on this thread alone: handing rows over costs a copy and a round trip. */
const SHARED_MIN_LOGITS = 1 << 22;

/** siteStats for many positions, shared with one worker thread when the work is large. */
export class StatsPool {
  /** `threads` 1 keeps all the work on this thread (to measure what the second one saves). */
  constructor(private readonly threads: 1 | 2 = 2) {}

  private worker?: Worker;
  /** Kept from job to job: fresh memory costs a page fault per page on first touch, which is most of a copy's time. */
  private shared?: SharedArrayBuffer;
  /** Jobs out with the worker, oldest first (it answers in order). */
  private pending: { resolve: (stats: SiteStats[]) => void; reject: (error: Error) => void }[] = [];

  /** Starts the worker ahead of a large job (it takes tens of milliseconds to boot), e.g. before the model runs. */
  warm(logits: number): void {
    if (this.threads === 2 && logits >= SHARED_MIN_LOGITS) this.start();
  }

  /** siteStats(rows, k) of each position, `positions[p][s]` its site s's logits [V]; [positions][sites]. Throws as siteStats does. */
  async siteStatsOf(positions: Float32Array[][], k: number): Promise<SiteStats[]> {
    const sites = positions[0]?.length ?? 0;
    const vocab = positions[0]?.[0]?.length ?? 0;
    if (this.threads === 1 || positions.length < 2 || positions.length * sites * vocab < SHARED_MIN_LOGITS) return positions.map((rows) => siteStats(rows, k));
    // The worker takes the later half, copied into shared memory (the runtime's buffer is not shared);
    // a job while another is out gets memory of its own.
    const half = positions.length >> 1;
    const theirs = positions.slice(half);
    const bytes = theirs.length * sites * vocab * 4;
    if (this.pending.length > 0 || !this.shared || this.shared.byteLength < bytes) this.shared = new SharedArrayBuffer(bytes);
    const shared = this.shared;
    const copy = new Float32Array(shared, 0, bytes / 4);
    theirs.forEach((rows, p) => rows.forEach((row, s) => copy.set(row, (p * sites + s) * vocab)));
    const worker = this.start();
    const answer = new Promise<SiteStats[]>((resolve, reject) => { this.pending.push({ resolve, reject }); });
    // While a job is out, the worker holds the process open (the await alone would not).
    worker.ref();
    worker.postMessage({ rows: shared, positions: theirs.length, sites, vocab, k } satisfies StatsJob);
    const mine = positions.slice(0, half).map((rows) => siteStats(rows, k));
    return [...mine, ...(await answer)];
  }

  /** Stops the worker, if one was started. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./stats-worker.js', import.meta.url));
    // An idle worker must not keep the process alive (siteStatsOf refs it while a job is out).
    worker.unref();
    worker.on('message', (stats: SiteStats[]) => {
      this.pending.shift()?.resolve(stats);
      if (this.pending.length === 0) worker.unref();
    });
    // A worker that fails or stops fails every job out with it; the next job starts a new one.
    const fail = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const p of this.pending.splice(0)) p.reject(error);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the statistics worker stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }
}
