// The commitment layer across a file of prompts (one per line): for each prompt, the first layer
// from which the model's final answer stays in the top k, then how many prompts commit at each layer.
// Usage: node examples/commitment.mjs [MODEL] FILE [K]
import { readFileSync } from 'node:fs';
import { openLens, commitmentLayer } from 'lens';

const [model = 'Xenova/gpt2', file, k = '1'] = process.argv.slice(2);
if (!file) throw new Error('give a file of prompts, one per line');
const prompts = readFileSync(file, 'utf8').split(/\r?\n/).filter((line) => line.length > 0);

const lens = await openLens({ model, batch: true });
const counts = new Map();
try {
  for (const prompt of prompts) {
    const [record] = await lens.run(prompt, { command: 'prob' });
    const answer = record.layers.at(-1).top[0];
    const { layer } = commitmentLayer(record, answer.id, Number(k));
    counts.set(layer, (counts.get(layer) ?? 0) + 1);
    console.log(`${layer}\t${JSON.stringify(answer.token)}\t${JSON.stringify(prompt)}`);
  }
} finally {
  await lens.close();
}
for (const [layer, n] of [...counts].sort((a, b) => a[0] - b[0])) console.log(`# layer ${layer}: ${n} prompt${n === 1 ? '' : 's'}`);
