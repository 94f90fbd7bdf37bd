// The examples run as a user runs them (node examples/X.mjs, importing 'lens' by name) on a fixture
// model; their output is checked against the CLI's --json records for the same prompts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { fixture, ROOT, runCli, runScript, scratchDir } from './helpers.js';

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
