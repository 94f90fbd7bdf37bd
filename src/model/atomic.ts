// Writing into the cache without ever leaving a half-written file in place: everything is
// written under a temporary name that carries the writer's pid, then renamed into place.
// Temporaries of this process are removed on exit; those of dead processes on the next run.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const TEMP = /\.tmp-(\d+)-[0-9a-f]{8}$/;
const ours = new Set<string>();
let exitHookInstalled = false;

/** A fresh temporary path next to `path`, removed if this process exits before it is renamed. */
export function temporaryPath(path: string): string {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  ours.add(tmp);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => { for (const p of ours) rmSync(p, { recursive: true, force: true }); });
  }
  return tmp;
}

/** Renames a temporary into place and forgets it. Throws what rename throws. */
export function commitTemporary(tmp: string, path: string): void {
  renameSync(tmp, path);
  ours.delete(tmp);
}

/** Removes a temporary that will not be committed. */
export function discardTemporary(tmp: string): void {
  rmSync(tmp, { recursive: true, force: true });
  ours.delete(tmp);
}

/** Writes a small file atomically (temporary name, then rename). */
export function writeAtomically(path: string, contents: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = temporaryPath(path);
  writeFileSync(tmp, contents);
  commitTemporary(tmp, path);
}

/** Whether a process with this id runs (EPERM: it does, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temporaries in `dir` left by processes that no longer run (killed mid-write). */
export function removeStaleTemporaries(dir: string): void {
  let names: string[];
  try { names = readdirSync(dir); } catch { return; }
  for (const name of names) {
    const match = TEMP.exec(name);
    if (match && Number(match[1]) !== process.pid && !processAlive(Number(match[1]))) rmSync(join(dir, name), { recursive: true, force: true });
  }
}
