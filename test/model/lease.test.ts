// The leases that keep `lens cache` from removing what a lens process uses: a live holder keeps a
// directory, a dead one holds nothing, and a removal under way turns users away.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { directoryUsers, holdDirectory, removeDirectory, tryLock, unlock } from '../../src/model/lease.js';
import { scratchDir } from '../helpers.js';

// A live process that is not this one, and the pid of one that has ended.
const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
after(() => sleeper.kill());
const livePid = sleeper.pid!;
const deadPid = spawnSync('true').pid!;

function directory(name: string): string {
  const dir = join(scratchDir(name), 'entry');
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'onnx', 'model.onnx'), 'x');
  return dir;
}

test('a directory held by a live process is kept; by a dead one, removed', () => {
  const dir = directory('lease-live');
  mkdirSync(join(dir, '.lens-users'));
  writeFileSync(join(dir, '.lens-users', String(livePid)), '');
  writeFileSync(join(dir, '.lens-users', String(deadPid)), '');
  assert.deepEqual(directoryUsers(dir), [livePid]);
  assert.deepEqual(removeDirectory(dir), [livePid]);
  assert.ok(existsSync(join(dir, 'onnx', 'model.onnx')), 'kept whole');
  assert.ok(!existsSync(join(dir, '.lens-users', 'removing')), 'the removal lock is given back');
  const stale = directory('lease-dead');
  mkdirSync(join(stale, '.lens-users'));
  writeFileSync(join(stale, '.lens-users', String(deadPid)), '');
  assert.deepEqual(removeDirectory(stale), []);
  assert.ok(!existsSync(stale));
  assert.deepEqual(readdirSync(join(stale, '..')), [], 'nothing left aside');
});

test('a removal under way (its lock held by a live process) turns a new user away; a dead remover does not', () => {
  const dir = directory('lease-removing');
  mkdirSync(join(dir, '.lens-users'));
  writeFileSync(join(dir, '.lens-users', 'removing'), String(livePid));
  assert.equal(holdDirectory(dir), false);
  assert.ok(!existsSync(join(dir, '.lens-users', String(process.pid))), 'its pid file withdrawn');
  writeFileSync(join(dir, '.lens-users', 'removing'), String(deadPid));
  assert.equal(holdDirectory(dir), true);
  assert.ok(existsSync(join(dir, '.lens-users', String(process.pid))));
  assert.equal(holdDirectory(join(dir, 'gone')), false, 'a directory that is not there cannot be held');
});

test('a lock file: taken once, refused while a live process holds it, taken over from a dead one', () => {
  const lock = join(scratchDir('lease-lock'), 'file.lock');
  assert.equal(tryLock(lock), true);
  unlock(lock);
  assert.ok(!existsSync(lock));
  writeFileSync(lock, String(livePid));
  assert.equal(tryLock(lock), false);
  writeFileSync(lock, String(deadPid));
  assert.equal(tryLock(lock), true);
  unlock(lock);
});
