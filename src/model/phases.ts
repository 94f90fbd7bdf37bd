// Named points of preparation and download at which the tests hold the process
// (LENS_TEST_PAUSE=<phase>) to kill it exactly there. Inert unless that variable names the phase.
import { writeSync } from 'node:fs';

/** Where a kill can land: before anything is written, with weights half written, with weights and graph written but no marker, with the marker written but the entry not yet renamed into place, with a download half received. */
export type Phase = 'before-first-write' | 'mid-weights' | 'before-marker' | 'before-commit' | 'mid-download';

/** Announces `phase` on stderr and blocks this thread for a minute when $LENS_TEST_PAUSE names it; otherwise nothing. */
export function reachedPhase(phase: Phase): void {
  if (process.env.LENS_TEST_PAUSE !== phase) return;
  writeSync(2, `lens-test-phase ${phase}\n`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
}
