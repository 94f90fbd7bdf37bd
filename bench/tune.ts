// lens eval and lens tune on one model: eval's tokens per second against the bare forward of the
// same windows, and tune's tokens per second with the held-out KL per layer (tuned vs logit lens)
// after each round of training until a time budget is spent. Prints JSON.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { evaluate } from '../src/commands/eval.js';
import { tune } from '../src/commands/tune.js';
import { loadLensModel } from '../src/model/runtime.js';

const [dir, budgetText, stepsText, tokensPerStepText, seqLenText, evalTokensText] = process.argv.slice(2);
const budgetMs = Number(budgetText) * 1000;
const steps = Number(stepsText), tokensPerStep = Number(tokensPerStepText), seqLen = Number(seqLenText), evalTokens = Number(evalTokensText);
const env = process.env;
const work = mkdtempSync(join(tmpdir(), 'lens-bench-tune-'));

// Text from a fixed word list in a seeded order: the same on every run, and different for training and held-out.
const WORDS = 'the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their can has been if more when will would who so no time year people way day man thing woman life child world school state family student group country problem hand part place case week company system program question work government number night point home water room mother area money story fact month lot right study book eye job word business issue side kind head house service friend father power hour game line end member law car city community name president team minute idea kid body information back parent face others level office door health person art war history party result change morning reason research girl guy moment air teacher force education'.split(' ');
function text(seed: number, words: number): string {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  return Array.from({ length: words }, (_, i) => WORDS[next() % WORDS.length] + (i % 12 === 11 ? '.' : '')).join(' ');
}
const train = join(work, 'train.txt'), heldOut = join(work, 'held-out.txt');
writeFileSync(train, text(1, 4 * steps * tokensPerStep / 3));
writeFileSync(heldOut, text(2, evalTokens));

// lens eval (logit lens only) against the bare forward: one run per window reading one position.
const evalStart = performance.now();
const logitOnly = await evaluate({ model: dir, dtype: 'fp32', offline: true, env, data: heldOut, maxTokens: evalTokens });
const evalMs = performance.now() - evalStart;
const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env, batch: true });
const ids = model.encodePrompt(text(2, evalTokens)).slice(0, evalTokens);
const forwardStart = performance.now();
for (let start = 0; start < ids.length; start += model.contextLength) {
  const window = ids.slice(start, start + model.contextLength);
  await model.run(window, [window.length - 1], 'norm');
}
const forwardMs = performance.now() - forwardStart;
await model.dispose();

// lens tune in rounds, the held-out KL measured after each (eval time not counted in the budget;
// the rounds' model loads are, tokensPerSecond leaves them out).
const out = join(work, 'lens');
const round = Math.max(1, Math.round(steps / 10));
const curve: { seconds: number; step: number; tuned: number[]; logit: number[] }[] = [];
let trainedMs = 0, trainedTokens = 0, step = 0;
const rates: number[] = [];
while (step < steps && trainedMs < budgetMs) {
  const start = performance.now();
  const result = await tune({ model: dir, dtype: 'fp32', offline: true, env, data: train, out, resume: step > 0, ...(step > 0 ? {} : { steps, tokensPerStep, seqLen }), stopAfter: Math.min(steps, step + round) });
  trainedMs += performance.now() - start;
  rates.push(result.tokensPerSecond);
  trainedTokens += (result.steps - step) * result.tokensPerStep;
  step = result.steps;
  const kl = await evaluate({ model: dir, dtype: 'fp32', offline: true, env, data: heldOut, maxTokens: evalTokens, tunedLens: out });
  curve.push({ seconds: trainedMs / 1000, step, tuned: kl.tuned!.map((l) => l.kl), logit: kl.logit.map((l) => l.kl) });
}
rmSync(work, { recursive: true, force: true });
process.stdout.write(JSON.stringify({
  eval: { tokens: logitOnly.tokens, ms: evalMs, forwardMs },
  tune: { tokens: trainedTokens, ms: trainedMs, tokensPerSecond: rates, steps: step, tokensPerStep, seqLen, curve },
}));
