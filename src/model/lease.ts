// Who is using what in the cache. A lens process that uses a cache directory (a download or a
// rewritten entry) leaves a file named after its pid in the directory's `.lens-users` folder
// until it exits; `lens cache` removes a directory only when no live process holds it. Both
// sides write their own flag first and then look for the other's (the user its pid file, the
// remover `removing`), so at least one of them sees the other: never both go ahead.
// Files of processes that died (killed, crashed) are ignored: a pid that no longer runs holds nothing.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { discardTemporary, processAlive, temporaryPath } from './atomic.js';

const USERS = '.lens-users';
const REMOVING = 'removing';
/** Written on each use; its modification time is the directory's last use. */
const LAST_USE = 'last-use';

const held = new Set<string>();
let exitHookInstalled = false;

function onExitRelease(path: string): void {
  held.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => { for (const p of held) rmSync(p, { force: true }); });
  }
}

/** The pid a lock file names, or undefined for a missing or unreadable one. */
function lockHolder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock file `path` (created holding our pid) unless a live process holds it; a lock of a
 * dead process is taken over. Returns whether we hold it; it is released by `unlock` or at exit.
 */
export function tryLock(path: string): boolean {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      onExitRelease(path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = lockHolder(path);
    if (holder === process.pid) return true;
    // A just-created lock may not hold its pid yet: only a named dead process's lock is stale.
    if (holder === undefined || processAlive(holder)) return false;
    // Renamed aside before removal, so two processes taking over the same stale lock cannot remove each other's new one.
    const stale = temporaryPath(path);
    try { renameSync(path, stale); } catch { /* another process took it over first */ }
    if (lockHolder(stale) !== holder) { try { renameSync(stale, path); } catch { /* the lock came back meanwhile */ } }
    discardTemporary(stale);
  }
  return false;
}

/** Releases a lock taken by `tryLock`. */
export function unlock(path: string): void {
  if (lockHolder(path) === process.pid) rmSync(path, { force: true });
  held.delete(path);
}

/**
 * Marks the cache directory `dir` in use by this process until it exits, and records the use.
 * Returns false when `dir` is gone or being removed (then the caller treats it as absent).
 */
export function holdDirectory(dir: string): boolean {
  const users = join(dir, USERS);
  try {
    mkdirSync(users);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false; // ENOENT: the directory is gone
  }
  const mine = join(users, String(process.pid));
  try {
    writeFileSync(mine, '');
    writeFileSync(join(users, LAST_USE), new Date().toISOString());
  } catch {
    return false;
  }
  onExitRelease(mine);
  const remover = lockHolder(join(users, REMOVING));
  if (remover !== undefined && remover !== process.pid && processAlive(remover)) {
    rmSync(mine, { force: true });
    held.delete(mine);
    return false;
  }
  return true;
}

/** Waits (up to `ms`) until a removal of `dir` that is under way has finished. */
export async function waitWhileRemoved(dir: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const remover = lockHolder(join(dir, USERS, REMOVING));
    if (remover === undefined || !processAlive(remover)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The live processes other than this one that hold `dir`. */
export function directoryUsers(dir: string): number[] {
  let names: string[];
  try { names = readdirSync(join(dir, USERS)); } catch { return []; }
  return names.filter((n) => /^\d+$/.test(n)).map(Number).filter((pid) => pid !== process.pid && processAlive(pid));
}

/** When `dir` was last used by lens (its last-use record, else its own modification time), in ms since the epoch. */
export function lastUse(dir: string): number {
  try {
    return statSync(join(dir, USERS, LAST_USE)).mtimeMs;
  } catch {
    return statSync(dir).mtimeMs;
  }
}

/**
 * Runs `remove` on the cache directory `dir` unless a live lens process holds it (while it runs,
 * no process starts using `dir`). Returns the pids holding it (empty: `remove` ran).
 */
export function withRemovalLock(dir: string, remove: () => void): number[] {
  const lock = join(dir, USERS, REMOVING);
  mkdirSync(join(dir, USERS), { recursive: true });
  if (!tryLock(lock)) return [lockHolder(lock) ?? 0];
  try {
    const users = directoryUsers(dir);
    if (users.length === 0) remove();
    return users;
  } finally {
    unlock(lock);
  }
}

/** Removes the cache directory `dir` unless a live lens process holds it: renamed aside first (no reader sees it half deleted), then deleted. Returns the pids holding it (empty: removed). */
export function removeDirectory(dir: string): number[] {
  return withRemovalLock(dir, () => {
    const trash = temporaryPath(dir);
    renameSync(dir, trash);
    discardTemporary(trash);
  });
}
