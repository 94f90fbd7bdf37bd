// The worker thread that builds a cache entry (see buildInWorker in prepare.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors.js';
import { buildEntry, type BuildJob } from './prepare.js';

try {
  parentPort!.postMessage({ ok: true, ...buildEntry(workerData as BuildJob) });
} catch (error) {
  const e = error as Error;
  parentPort!.postMessage({ ok: false, user: e instanceof UserError, message: e.message, hint: (e as UserError).hint, stack: e.stack });
}
