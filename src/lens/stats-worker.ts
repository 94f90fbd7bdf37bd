// The second thread of StatsPool (stats-pool.ts): siteStats for the positions it is sent, from
// logit rows in shared memory, answered in the order asked.
import { parentPort } from 'node:worker_threads';
import { siteStats } from './record.js';
import type { StatsJob } from './stats-pool.js';

parentPort!.on('message', (job: StatsJob) => {
  const rows = new Float32Array(job.rows, 0, job.positions * job.sites * job.vocab);
  const perPosition = job.sites * job.vocab;
  const stats = Array.from({ length: job.positions }, (_, p) => Array.from({ length: job.sites }, (_, s) => rows.subarray(p * perPosition + s * job.vocab, p * perPosition + (s + 1) * job.vocab)))
    .map((siteLogits) => siteStats(siteLogits, job.k));
  parentPort!.postMessage(stats);
});
