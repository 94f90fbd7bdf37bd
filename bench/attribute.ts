// lens attribute's cost per prompt at one position (the last, target " the"), with and without --heads: the time
// between successive prompts' results of the command's own generator (the model loaded once, the
// first prompt a warm-up). Prints JSON timings; bench.ts sets them against the bare forward.
import { performance } from 'node:perf_hooks';
import { attribute } from '../src/commands/attribute.js';
import { parseIndexSpec } from '../src/lens/spec.js';

const [dir, promptsJson, dtype] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];

async function perPrompt(heads: boolean): Promise<number[]> {
  const options = { model: dir, dtype: (dtype ?? 'fp32') as 'fp32', positions: parseIndexSpec('-1', { step: false }), offline: true, targets: [{ id: 262 }], heads, env: process.env, batch: true };
  const times: number[] = [];
  let last: number | undefined;
  for await (const _ of attribute([prompts[0], ...prompts], options, { color: false })) {
    const now = performance.now();
    if (last !== undefined) times.push(now - last);
    last = now;
  }
  return times;
}

const plain = await perPrompt(false);
const heads = await perPrompt(true);
process.stdout.write(JSON.stringify({ plain, heads }));
