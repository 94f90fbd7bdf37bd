// Loop over prompts with the model loaded once: each prompt's next-token guess at the final layer,
// and the first layer from which that guess stays the top-1.
// Usage: node examples/top1-loop.mjs [MODEL] [PROMPT ...]
import { openLens, commitmentLayer } from 'lens';

const [model = 'Xenova/gpt2', ...given] = process.argv.slice(2);
const prompts = given.length > 0 ? given : ['Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is'];

const lens = await openLens({ model });
try {
  for (const prompt of prompts) {
    // command 'prob' follows the lens's own top-1 tokens, the final layer's first.
    const [record] = await lens.run(prompt, { command: 'prob' });
    const guess = record.layers.at(-1).top[0];
    const from = commitmentLayer(record, guess.id, 1);
    console.log(`${JSON.stringify(prompt)} -> ${JSON.stringify(guess.token)} (${(guess.prob * 100).toFixed(1)}%), top-1 from layer ${from.layer}`);
  }
} finally {
  await lens.close();
}
