// Debian's python3-torch, used only to make test fixtures with the real torch.save and to read
// lens's own files back with the real torch.load. Missing: the test is skipped on a workstation and
// fails under CI=true (.ci/run installs it).
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

const PYTHON = '/usr/bin/python3';
let available: boolean | undefined;

/** Whether `import torch` works in the system Python. */
function torchAvailable(): boolean {
  available ??= spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  return available;
}

/**
 * Runs a Python script (with torch importable) in `cwd` and returns its stdout; false when torch is
 * missing (after marking the test skipped). Under CI=true a missing torch throws instead. Throws
 * with Python's stderr when the script fails.
 */
export function runTorchScript(t: TestContext, script: string, cwd: string, args: string[] = []): string | false {
  if (!torchAvailable()) {
    if (process.env.CI === 'true') throw new Error(`python3-torch is missing (${PYTHON} -c "import torch" fails); CI needs it`);
    t.skip('python3-torch is not installed');
    return false;
  }
  const run = spawnSync(PYTHON, ['-c', script, ...args], { cwd, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (run.status !== 0) throw new Error(`python failed (${run.status}): ${run.stderr}`);
  return run.stdout;
}
