// The values `lens cache` reads and prints: sizes, ages and the download progress line, hand-checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAge, parseSize } from '../../src/model/cache.js';
import { formatBytes, formatDownloadProgress, formatDuration } from '../../src/render/progress.js';
import { formatAge } from '../../src/render/cache.js';

test('sizes: decimal units, binary with i, bare bytes; anything else is a usage error', () => {
  assert.equal(parseSize('20GB'), 20_000_000_000);
  assert.equal(parseSize('500 MB'), 500_000_000);
  assert.equal(parseSize('1.5GiB'), 1_610_612_736);
  assert.equal(parseSize('2k'), 2000);
  assert.equal(parseSize('0'), 0);
  assert.equal(parseSize('123B'), 123);
  for (const bad of ['', 'GB', '-1GB', '12 parsecs', '1e9']) assert.throws(() => parseSize(bad), (e: Error & { exitCode?: number }) => e.exitCode === 2, bad);
});

test('ages: s, m, h, d, w', () => {
  assert.equal(parseAge('30d'), 30 * 86_400_000);
  assert.equal(parseAge('12h'), 43_200_000);
  assert.equal(parseAge('2w'), 14 * 86_400_000);
  assert.equal(parseAge('90m'), 5_400_000);
  assert.equal(parseAge('1.5s'), 1500);
  for (const bad of ['30', 'soon', '3y', '-1d']) assert.throws(() => parseAge(bad), (e: Error & { exitCode?: number }) => e.exitCode === 2, bad);
});

test('bytes, durations and ages as printed', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1000), '1.00 kB');
  assert.equal(formatBytes(12_345_678), '12.3 MB');
  assert.equal(formatBytes(4_500_000_000), '4.50 GB');
  assert.equal(formatDuration(42.4), '42s');
  assert.equal(formatDuration(185), '3m05s');
  assert.equal(formatDuration(7800), '2h10m');
  assert.equal(formatAge(30_000), 'just now');
  assert.equal(formatAge(5 * 60_000), '5 min ago');
  assert.equal(formatAge(3 * 3_600_000), '3 h ago');
  assert.equal(formatAge(12 * 86_400_000), '12 d ago');
});

test('the progress line: bytes, percentage, rate and ETA of the file and of the whole download', () => {
  // 1.2 of 3.4 MB at 2 MB/s: 1.1 s left; overall 12 of 40 MB: 14 s left.
  assert.equal(formatDownloadProgress({ file: 'onnx/model.onnx_data', done: 1_200_000, total: 3_400_000, rate: 2_000_000, overall: { done: 12_000_000, total: 40_000_000 } }),
    'downloading onnx/model.onnx_data: 1.2/3.4 MB 35% 2.00 MB/s ETA 1s · all 12.0/40.0 MB 30% ETA 14s');
  assert.equal(formatDownloadProgress({ file: 'config.json', done: 331, total: 331 }), 'downloading config.json: 0.0/0.0 MB 100%');
  assert.equal(formatDownloadProgress({ file: 'x', done: 5_000_000 }), 'downloading x: 5.0 MB');
});
