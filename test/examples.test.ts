// The examples run as a user runs them (node examples/X.mjs, importing 'lens' by name) on a fixture
// model; their output is checked against the CLI's --json records for the same prompts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { cleanEnv, fixture, ROOT, runCli, runScript, scratchDir } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');

async function cliRecords(args: string[]): Promise<LensRecord[]> {
  const r = await runCli([...args, '-m', MODEL, '--json'], {});
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

/** The first site from which the final top-1 stays the top-1, computed from the records' top lists. */
function firstStayingTop1(record: LensRecord): number {
  const answer = record.layers.at(-1)!.top[0].id;
  let s = record.layers.length - 1;
  while (s > 0 && record.layers[s - 1].top[0].id === answer) s--;
  return record.layers[s].layer;
}

const PROMPTS = ['Paris is capital of', 'The most famous sports in USA is', 'a "quoted", prompt'];

test('top1-loop prints each prompt\'s final guess and where it becomes the top-1', async () => {
  const out = (await runScript(join(ROOT, 'examples', 'top1-loop.mjs'), [MODEL, ...PROMPTS])).trim().split('\n');
  const records = await cliRecords(['topk', ...PROMPTS]);
  assert.equal(out.length, PROMPTS.length);
  records.forEach((record, i) => {
    const top = record.layers.at(-1)!.top[0];
    assert.equal(out[i], `${JSON.stringify(record.prompt)} -> ${JSON.stringify(top.token)} (${(top.prob * 100).toFixed(1)}%), top-1 from layer ${firstStayingTop1(record)}`);
  });
});

test('prob-csv writes prompt,layer,probability rows equal to prob --json', async () => {
  const out = (await runScript(join(ROOT, 'examples', 'prob-csv.mjs'), [MODEL, ' football', ...PROMPTS])).trim().split('\n');
  assert.equal(out[0], 'prompt,layer,probability');
  const records = await cliRecords(['prob', '--target', ' football', ...PROMPTS]);
  const expected = records.flatMap((r) => r.layers.map((l) => `"${r.prompt.replaceAll('"', '""')}",${l.layer},${l.targets[0].prob}`));
  assert.deepEqual(out.slice(1), expected);
});

test('commitment counts prompts by the layer their answer commits at', async () => {
  const file = join(scratchDir('examples-prompts'), 'prompts.txt');
  writeFileSync(file, `${PROMPTS.join('\n')}\n\nAlan Turing was a\n`);
  const out = (await runScript(join(ROOT, 'examples', 'commitment.mjs'), [MODEL, file])).trim().split('\n');
  const records = await cliRecords(['topk', ...PROMPTS, 'Alan Turing was a']);
  const layers = records.map(firstStayingTop1);
  assert.deepEqual(out.slice(0, records.length), records.map((r, i) => `${layers[i]}\t${JSON.stringify(r.layers.at(-1)!.top[0].token)}\t${JSON.stringify(r.prompt)}`));
  const counts = [...new Set(layers)].sort((a, b) => a - b).map((l) => { const n = layers.filter((x) => x === l).length; return `# layer ${l}: ${n} prompt${n === 1 ? '' : 's'}`; });
  assert.deepEqual(out.slice(records.length), counts);
});

test("the README's library example runs as written (its model swapped for the fixture) and prints the CLI's numbers", async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use it as a library'));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code?.includes("'Xenova/gpt2'"), 'the example opens Xenova/gpt2');
  // Inside the package (under dist/), so that `import ... from 'lens'` resolves to it by name.
  const script = join(ROOT, 'dist', 'test', 'readme-example.mjs');
  writeFileSync(script, code!.replace("'Xenova/gpt2'", JSON.stringify(MODEL)));
  try {
    const { status, stdout, stderr } = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [script], { cwd: ROOT, env: cleanEnv({ HF_HUB_OFFLINE: '1' }), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ status: code, stdout: out, stderr: err }));
    });
    // Its catch prints a LensError on stderr and exits 0: an empty stderr is what says it worked.
    assert.equal(stderr, '');
    assert.equal(status, 0);
    const [record] = await cliRecords(['prob', '--target', ' France', 'Paris is capital of']);
    const committed = record.layers[0].targets[0].first_top10;
    assert.deepEqual(stdout.trim().split('\n'), [
      ...record.layers.map((l) => `${l.layer} ${l.targets[0].prob}`),
      committed === null ? 'undefined' : `{ layer: ${committed}, site: 'block' }`,
    ]);
  } finally {
    rmSync(script, { force: true });
  }
});
