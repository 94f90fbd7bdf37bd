// A CSV of P(target) by layer for each prompt: prompt,layer,probability.
// Usage: node examples/prob-csv.mjs [MODEL] [TARGET] [PROMPT ...] > probs.csv
import { openLens } from 'lens';

const [model = 'Xenova/gpt2', target = ' football', ...given] = process.argv.slice(2);
const prompts = given.length > 0 ? given : ['The most famous sports in USA is', 'My favourite game to watch is'];

const csvField = (text) => `"${text.replaceAll('"', '""')}"`;
const lens = await openLens({ model });
try {
  console.log('prompt,layer,probability');
  for (const record of await lens.run(prompts, { targets: [target] })) {
    for (const entry of record.layers) console.log(`${csvField(record.prompt)},${entry.layer},${entry.targets[0].prob}`);
  }
} finally {
  await lens.close();
}
