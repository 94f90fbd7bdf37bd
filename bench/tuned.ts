// The tuned lens's costs on one model: loading a params.pt of the model's shape (L translators of
// d×d, random values, written by lens's own writer), and the model run per prompt with the tuned
// lens against the logit lens, interleaved prompt by prompt. Prints JSON timings.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadLensModel } from '../src/model/runtime.js';
import { readTunedLensDir } from '../src/tuned/lens-dir.js';
import { writeTorchStateDict } from '../src/tuned/torch-file.js';

const [dir, promptsJson, repsText] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];
const reps = Number(repsText ?? 5);
const model = await loadLensModel(dir, { dtype: 'fp32', offline: true, env: process.env, batch: true });
const d = model.width!, L = model.layers;
const lensDir = mkdtempSync(join(tmpdir(), 'lens-bench-tuned-'));
let seed = 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) / Math.sqrt(d);
const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
for (let l = 0; l < L; l++) {
  tensors.set(`${l}.weight`, { shape: [d, d], data: Float32Array.from({ length: d * d }, random) });
  tensors.set(`${l}.bias`, { shape: [d], data: Float32Array.from({ length: d }, random) });
}
writeFileSync(join(lensDir, 'params.pt'), Buffer.concat(writeTorchStateDict(tensors)));
writeFileSync(join(lensDir, 'config.json'), JSON.stringify({ base_model_name_or_path: dir, d_model: d, num_hidden_layers: L, bias: true, lens_type: 'linear_tuned_lens' }));
// Wall time, and CPU time (user + system), which a machine busy with other work inflates less.
const load: number[] = [], loadCpu: number[] = [];
let lens = readTunedLensDir(lensDir);
for (let i = 0; i < reps; i++) {
  const start = performance.now(), cpu = process.cpuUsage();
  lens = readTunedLensDir(lensDir);
  load.push(performance.now() - start);
  const used = process.cpuUsage(cpu);
  loadCpu.push((used.user + used.system) / 1000);
}
const logit: number[] = [], tuned: number[] = [];
const time = async (into: number[], run: () => Promise<unknown>) => { const start = performance.now(); await run(); into.push(performance.now() - start); };
for (const prompt of [prompts[0], ...prompts, ...prompts, ...prompts]) {
  const ids = model.encodePrompt(prompt), at = [ids.length - 1];
  await time(logit, () => model.run(ids, at, 'norm'));
  await time(tuned, () => model.run(ids, at, 'tuned', { translators: lens.translators }));
}
await model.dispose();
rmSync(lensDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify({ paramsMb: (L * (d * d + d) * 4) / 2 ** 20, load, loadCpu, logit: logit.slice(1), tuned: tuned.slice(1) }));
