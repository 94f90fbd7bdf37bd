// Per-prompt cost of the lens inside one process: load once, then time each prompt through
// the same path the CLI takes (tokenize, run, build the record), and the model run alone.
// Prints JSON timings.
import { performance } from 'node:perf_hooks';
import { analyze } from '../src/commands/analyze.js';
import { loadLensModel } from '../src/model/runtime.js';
import { parseIndexSpec } from '../src/lens/spec.js';
import type { Dtype } from '../src/model/paths.js';

const [dir, promptsJson, dtype = 'fp32'] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];
const base = {
  model: dir, dtype: dtype as Dtype, raw: false, positions: parseIndexSpec('-1', { step: false }), k: 5, offline: true,
  env: process.env, warn: () => {}, batch: true,
};
// The target is the first token of " football" in this model's vocabulary: a several-token target
// costs one lens row per token (teacher forcing), which a bare forward does not do.
const probe = await loadLensModel(dir, base);
const target = probe.encode(' football')[0];
await probe.dispose();
const options = { ...base, targets: [{ id: target }] };
// The marginal cost of one more prompt in a batch: the time between consecutive records
// (prompts are read ahead and overlapped, so a prompt's own latency is not its cost).
const done: number[] = [];
const list = [prompts[0], ...prompts, ...prompts, ...prompts];
for await (const _ of analyze(list, options)) done.push(performance.now());
const perPrompt = done.slice(1).map((t, i) => t - done[i]);

// The model run alone (no record building), to show where per-prompt time goes.
const model = await loadLensModel(dir, options);
const runOnly: number[] = [];
for (const p of list) {
  const ids = model.encodePrompt(p);
  const start = performance.now();
  await model.run(ids, [ids.length - 1], 'norm');
  runOnly.push(performance.now() - start);
}
await model.dispose();
process.stdout.write(JSON.stringify({ perPrompt, runOnly: runOnly.slice(1), maxRssKb: process.resourceUsage().maxRSS }));
