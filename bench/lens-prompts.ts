// Per-prompt cost of the lens inside one process: load once, then time each prompt through
// the same path the CLI takes (tokenize, run, build the record). Prints JSON timings.
import { performance } from 'node:perf_hooks';
import { analyze } from '../src/commands/analyze.js';

const [dir, promptsJson] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];
const options = {
  model: dir, dtype: 'fp32' as const, raw: false, position: -1, k: 5, offline: true,
  targets: [{ text: ' football' }], env: process.env, warn: () => {}, batch: true,
};
async function* timed(list: string[], marks: number[]) {
  for (const p of list) { marks.push(performance.now()); yield p; }
}
const marks: number[] = [];
const done: number[] = [];
const list = [prompts[0], ...prompts, ...prompts, ...prompts];
for await (const _ of analyze(timed(list, marks), options)) done.push(performance.now());
const perPrompt = done.slice(1).map((t, i) => t - marks[i + 1]);
process.stdout.write(JSON.stringify({ perPrompt, maxRssKb: process.resourceUsage().maxRSS }));
