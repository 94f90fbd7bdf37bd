import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { siteStats } from '../../src/lens/record.js';
import { StatsPool } from '../../src/lens/stats-pool.js';
import { logSumExp } from '../reference/stats.js';
import { assertClose, ROOT } from '../helpers.js';

// Positions × sites × vocabulary above the pool's threshold (4 Mi logits), so the worker takes half.
const P = 5, S = 3, V = 300_000;

/** Rows [P][S][V] of deterministic logits, as views into one buffer like the runtime's. */
function positionsOf(seed: number): Float32Array[][] {
  const all = new Float32Array(P * S * V);
  let s = seed;
  for (let i = 0; i < all.length; i++) { s = (s * 1103515245 + 12345) % 2 ** 31; all[i] = (s / 2 ** 31) * 12 - 6; }
  return Array.from({ length: P }, (_, p) => Array.from({ length: S }, (_, site) => all.subarray((site * P + p) * V, (site * P + p + 1) * V)));
}

test('the pool gives every position the very statistics one thread gives, in order, also for two jobs at once', async () => {
  const pool = new StatsPool();
  try {
    const a = positionsOf(1), b = positionsOf(2);
    const [fromA, fromB] = await Promise.all([pool.siteStatsOf(a, 5), pool.siteStatsOf(b, 5)]);
    assert.ok((pool as unknown as { worker?: unknown }).worker, 'a worker took part');
    assert.deepEqual(fromA, a.map((rows) => siteStats(rows, 5)));
    assert.deepEqual(fromB, b.map((rows) => siteStats(rows, 5)));
    // And the worker's half against the float64 reference: log Z of the last position's first site.
    assertClose(fromA[P - 1][0].logZ, logSumExp(Array.from(a[P - 1][0])), 1e-9, 'log Z from the worker');
  } finally {
    await pool.close();
  }
});

test('a pool left open does not keep the process alive', () => {
  const script = `import { StatsPool } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'lens', 'stats-pool.js'))};
    const rows = Array.from({ length: 4 }, () => Array.from({ length: 2 }, () => new Float32Array(600000).fill(1)));
    const stats = await new StatsPool().siteStatsOf(rows, 2);
    console.log(stats.length);`;
  const dir = mkdtempSync(join(tmpdir(), 'lens-stats-pool-'));
  const file = join(dir, 'open-pool.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '4');
});
