// Random prompts and flags thrown at the CLI: every run ends with exit 0 and valid output,
// or exit 1/2 and one line on stderr — never a stack trace, never a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, runCli, scratchDir, type CliResult } from './helpers.js';

const CASES = Number(process.env.LENS_FUZZ_CASES ?? 64);
const { dir: MODEL } = fixture('opset17-flat');
const cache = scratchDir('fuzz-cache');
const files = scratchDir('fuzz-files');

function prng(seed: number): () => number {
  return () => { seed = (seed + 0x6d2b79f5) >>> 0; let t = Math.imul(seed ^ (seed >>> 15), seed | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

const TEXTS = [
  '', ' ', '   \t ', 'Paris is capital of', 'x'.repeat(10_000), 'word '.repeat(70), '\u0001\u0007\u001b[31mred', '\u007f\u0085',
  '\ud800 lone', 'lone \udfff', '👩‍🚀 emoji 🇫🇷', 'مرحبا بالعالم', 'שלום \u202eevil', '<|endoftext|>', 'a<|endoftext|>b', '日本語のテキスト',
  'e\u0301\u0301\u0301', '\ufeffbom', '--json', '-k', 'null', '"quoted"', '\\', 'ﷺ', 'a\u200db',
];
// Bytes only a file can carry: NUL, invalid UTF-8, CR LF.
const FILE_CONTENTS: Buffer[] = [
  Buffer.from('one\u0000two\nthree\n'), Buffer.from([0xff, 0xfe, 0x41, 0x0a, 0xc3, 0x28, 0x0a]), Buffer.from('a\r\nb\r\n\r\n'),
  Buffer.from('\n\n\n'), Buffer.from(''), Buffer.from('x'.repeat(20_000)), Buffer.from([0xed, 0xa0, 0x80, 0x0a]),
];

function randomCase(rand: () => number, index: number): { args: string[]; input?: Buffer } {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const command = pick(['topk', 'prob', 'rank', 'diff']);
  const args = [command, '--model', MODEL];
  let input: Buffer | undefined;
  const promptCount = Math.floor(rand() * 3);
  for (let i = 0; i < promptCount; i++) args.push(pick(TEXTS));
  if (rand() < 0.7) args.push('--json');
  if (rand() < 0.3) args.push('-k', pick(['1', '3', '0', '-1', 'abc', '1e3', '50257', '99999999999999999999', ' 2']));
  if (rand() < 0.3) args.push('--position', pick(['0', '-1', '3', '-50', '100', 'x', '1.5', '--raw', ':', '-4:', '0,3,-1', '5:2', '1:2:3', '::2', '']));
  if (rand() < 0.2) args.push('--layers', pick(['::2', '-2:', '0', '9', '5:', 'a', '::0']));
  if (rand() < 0.2) args.push('--sublayers');
  if (rand() < 0.3) args.push('--raw');
  if (rand() < 0.3) args.push('--target', pick(TEXTS));
  if (rand() < 0.2) args.push('--target-id', pick(['0', '4346', '50256', '50257', '-1', 'abc']));
  if (command === 'rank' && rand() < 0.3) args.push('--gold', pick(TEXTS));
  if (rand() < 0.1) args.push('--dtype', pick(['fp32', 'fp16', 'q8', 'zzz']));
  if (rand() < 0.1) args.push(pick(['--nope', '-z', '--offline', '--verbose']));
  if (rand() < 0.25) {
    const contents = pick(FILE_CONTENTS);
    if (rand() < 0.5) {
      const file = join(files, `prompts-${index}.txt`);
      writeFileSync(file, contents);
      args.push('--file', file);
    } else {
      args.push('--file', '-');
      input = contents;
    }
  }
  return { args, input };
}

function check(args: string[], r: CliResult): void {
  const what = `lens ${JSON.stringify(args.slice(3)).slice(0, 300)} → exit ${r.code} ${r.signal ?? ''}\nstderr: ${r.stderr.slice(0, 500)}`;
  assert.equal(r.signal, null, `killed (hang?): ${what}`);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/, `stack trace or internal error: ${what}`);
  const errLines = r.stderr.split('\n').filter((l) => l.length > 0);
  if (r.code === 0) {
    assert.ok(errLines.every((l) => l.startsWith('lens: warning: ')), `unexpected stderr on success: ${what}`);
    assert.ok(r.stdout.length > 0, `no output: ${what}`);
    if (args.includes('--json')) {
      for (const line of r.stdout.trim().split('\n')) {
        const record = JSON.parse(line);
        assert.ok(Array.isArray(record.layers) && record.layers.length === (args.includes('--sublayers') ? 7 : 4), what);
      }
    }
  } else {
    assert.ok(r.code === 1 || r.code === 2, `exit code: ${what}`);
    assert.equal(errLines.length, 1, `one stderr line: ${what}`);
    assert.match(errLines[0], /^lens: /, what);
  }
}

test(`fuzz: ${CASES} random command lines`, async () => {
  const rand = prng(Number(process.env.LENS_FUZZ_SEED ?? 20261127));
  const cases = Array.from({ length: CASES }, (_, i) => randomCase(rand, i));
  const outcomes = { ok: 0, exit1: 0, exit2: 0 };
  for (let i = 0; i < cases.length; i += 2) {
    const batch = cases.slice(i, i + 2);
    const results = await Promise.all(batch.map((c) => runCli(c.args, { env: { LENS_CACHE: cache, HF_HUB_OFFLINE: '1' }, input: c.input, timeoutMs: 60_000 })));
    results.forEach((r, j) => {
      check(batch[j].args, r);
      outcomes[r.code === 0 ? 'ok' : r.code === 1 ? 'exit1' : 'exit2']++;
    });
  }
  console.log(`fuzz: tried ${CASES} cases: ${outcomes.ok} succeeded, ${outcomes.exit1} exit 1, ${outcomes.exit2} exit 2`);
  assert.ok(outcomes.ok > 0 && outcomes.exit2 > 0, 'the generator reaches both outcomes');
});
