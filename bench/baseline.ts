// The baseline: transformers.js as it comes. Loads the unmodified model with from_pretrained and
// runs plain forward passes; prints JSON timings. Run as its own process by the benchmark.
import { performance } from 'node:perf_hooks';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';

const [dir, promptsJson, dtype = 'fp32'] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];
env.allowRemoteModels = false;
env.localModelPath = '';
const t0 = performance.now();
const tokenizer = await AutoTokenizer.from_pretrained(dir);
const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: dtype as 'fp32' });
const forward = async (text: string) => {
  const inputs = tokenizer(text);
  await (model as unknown as { forward(i: unknown): Promise<unknown> }).forward(inputs);
};
await forward(prompts[0]);
const loadAndFirst = performance.now() - t0;
const perPrompt: number[] = [];
for (let rep = 0; rep < 3; rep++) for (const p of prompts) {
  const s = performance.now();
  await forward(p);
  perPrompt.push(performance.now() - s);
}
process.stdout.write(JSON.stringify({ loadAndFirst, perPrompt, maxRssKb: process.resourceUsage().maxRSS }));
await model.dispose();
