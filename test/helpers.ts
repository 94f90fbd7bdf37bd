// Shared test helpers: tolerances, fixture models in a temporary directory, running the CLI.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFixture, type Gpt2Config, type Gpt2Weights } from './fixtures/gpt2.js';

/** The repository root (tests run from dist/test). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LENS_BIN = join(ROOT, 'bin', 'lens.js');

/** Asserts |actual - expected| <= tol element by element; returns the largest |actual - expected|. */
export function assertClose(actual: ArrayLike<number> | number, expected: ArrayLike<number> | number, tol: number, what = 'value'): number {
  const a = typeof actual === 'number' ? [actual] : actual;
  const e = typeof expected === 'number' ? [expected] : expected;
  assert.equal(a.length, e.length, `${what}: length ${a.length} != ${e.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i] - e[i]);
    if (!(diff <= tol)) assert.fail(`${what}[${i}]: ${a[i]} vs ${e[i]} differ by ${diff} > ${tol}`);
    worst = Math.max(worst, diff);
  }
  return worst;
}

/** The tiny model shape the tests use: GPT-2's architecture and vocabulary, 3 layers, d = 32. */
export const TINY: Gpt2Config = { layers: 3, d: 32, heads: 4, nPositions: 64, seed: 7 };

const scratchDirs: string[] = [];
process.on('exit', () => { for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true }); });

/** A scratch directory removed when the process exits. */
export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `lens-${name}-`));
  scratchDirs.push(dir);
  return dir;
}

const fixtures = new Map<string, { dir: string; weights: Gpt2Weights }>();
let fixtureRoot: string | undefined;

/** A fixture model of the given form, written once per test process (with the dtype variant files if asked). */
export function fixture(form: string, config: Gpt2Config = TINY, options: { variants?: boolean } = {}): { dir: string; weights: Gpt2Weights } {
  const key = `${form}-${JSON.stringify(config)}-${options.variants === true}`;
  let entry = fixtures.get(key);
  if (!entry) {
    fixtureRoot ??= scratchDir('fixtures');
    const dir = join(fixtureRoot, `${form}-${fixtures.size}`);
    entry = { dir, weights: writeFixture(dir, form, config, options) };
    fixtures.set(key, entry);
  }
  return entry;
}

// The variables lens reads (directly or through transformers.js): a test sees only those it sets.
const CALLER_ONLY = /^(HF_|HUGGINGFACE_|LENS_)|^(NO_COLOR|FORCE_COLOR|XDG_CACHE_HOME)$/;
let defaultCache: string | undefined;
let emptyHuggingFaceCache: string | undefined;

/**
 * The caller's environment without HF_*, LENS_*, NO_COLOR, FORCE_COLOR and XDG_CACHE_HOME, plus `extra`;
 * LENS_CACHE defaults to a scratch directory and HF_HUB_CACHE to an empty one (the caller's own
 * Hugging Face cache may hold anything).
 */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !CALLER_ONLY.test(name)));
  defaultCache ??= scratchDir('default-cache');
  emptyHuggingFaceCache ??= scratchDir('hf-cache');
  const huggingFace = extra.HF_HOME || extra.HUGGINGFACE_HUB_CACHE ? {} : { HF_HUB_CACHE: emptyHuggingFaceCache };
  return { ...env, LENS_CACHE: defaultCache, ...huggingFace, ...extra };
}

export interface CliResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs bin/lens.js with args in cleanEnv(options.env); stdin gets `input` (closed if absent). Resolves when the process ends. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [LENS_BIN, ...args], { env: cleanEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    // Only a guard against a hung child: generous, so that a loaded (or emulated) machine's slow run is not killed.
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
    child.on('error', reject);
    child.on('close', (code, signal) => { clearTimeout(timer); resolvePromise({ code, signal, stdout, stderr }); });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Asserts a failed run printed exactly one line on stderr and no stack trace, with the given exit code. */
export function assertOneLineError(result: CliResult, code: number, pattern?: RegExp): void {
  const lines = result.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(result.code, code, `exit code ${result.code}, stderr: ${result.stderr}`);
  assert.equal(lines.length, 1, `expected one stderr line, got: ${result.stderr}`);
  assert.doesNotMatch(result.stderr, /\n\s+at |Error:/, 'stack trace on stderr');
  if (pattern) assert.match(lines[0], pattern);
  assert.equal(result.stdout, '', 'nothing on stdout');
}

/** Runs `node script args` in `cwd` with the test environment (offline); resolves with its stdout, failing on a non-zero exit. */
export function runScript(script: string, args: string[], cwd = ROOT): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd, env: cleanEnv({ HF_HUB_OFFLINE: '1' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${script} exited ${code}: ${stderr}`))));
  });
}
