// npm run bench: lens against transformers.js as it comes, on a random-weight model of
// GPT-2-small's exact shape in the tests' export form. Medians over repetitions; every
// figure is also given as a ratio to the baseline measured in the same run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT } from '../test/helpers.js';

const FORM = 'opset14-merged';
const SHAPE = { layers: 12, d: 768, heads: 12, nPositions: 1024, seed: 1 };
const REPS = Number(process.env.BENCH_REPS ?? 5);
const PROMPTS = [
  'Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is', 'The quick brown fox jumps over',
  'In the beginning was the word', 'Water boils at one hundred degrees', 'The stock market fell sharply today',
  'She opened the door and saw a', 'My favourite programming language is', 'The capital of Japan is the city of',
];

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

function modelDir(): string {
  const dir = join(ROOT, 'bench', '.cache', `gpt2-small-${FORM}`);
  const marker = join(dir, '.complete');
  if (!existsSync(marker)) {
    process.stderr.write(`building a random GPT-2-small (${FORM}) in ${dir} …\n`);
    rmSync(dir, { recursive: true, force: true });
    const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'bench', 'build-model.js'), dir, FORM, JSON.stringify(SHAPE)], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`building the benchmark model failed (${r.status})`);
    writeFileSync(marker, JSON.stringify(SHAPE));
  }
  return dir;
}

interface ProcessRun { wallMs: number; maxRssMb: number; stdout: string }

/**
 * Runs a node script; wall time from spawn to exit, peak RSS as the child reports it (Linux counts a
 * child's peak from the spawning process's size, so this process stays small: see build-model.ts).
 */
function runNode(args: string[], env: NodeJS.ProcessEnv = {}): ProcessRun {
  const rssFile = join(tmpdir(), `lens-bench-rss-${process.pid}`);
  rmSync(rssFile, { force: true });
  const start = performance.now();
  const r = spawnSync(process.execPath, args, { env: { ...process.env, ...env, LENS_BENCH_RSS_FILE: rssFile }, encoding: 'utf8', maxBuffer: 1 << 28 });
  const wallMs = performance.now() - start;
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const maxRssMb = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8')) / 1024 : NaN;
  return { wallMs, maxRssMb, stdout: r.stdout };
}

const lensBin = join(ROOT, 'bin', 'lens.js');
const dir = modelDir();
const modelBytes = statSync(join(dir, 'onnx', 'model.onnx')).size;
const modelMb = modelBytes / 2 ** 20;

// prepare: the first-ever run (fresh cache each time).
const prepare: ProcessRun[] = [];
for (let i = 0; i < Math.min(REPS, 3); i++) {
  const cache = mkdtempSync(join(tmpdir(), 'lens-bench-cache-'));
  prepare.push(runNode([lensBin, 'topk', 'Paris is capital of', '--model', dir], { LENS_CACHE: cache }));
  if (i < Math.min(REPS, 3) - 1) rmSync(cache, { recursive: true, force: true });
  else process.env.LENS_CACHE = cache;
}
const cache = process.env.LENS_CACHE!;
const cold = Array.from({ length: REPS }, () => runNode([lensBin, 'topk', 'Paris is capital of', '--model', dir], { LENS_CACHE: cache }));
const help = Array.from({ length: REPS }, () => runNode([lensBin, '--help']));

const lensPrompts = runNode([join(ROOT, 'dist', 'bench', 'lens-prompts.js'), dir, JSON.stringify(PROMPTS)], { LENS_CACHE: cache });
const lensParsed = JSON.parse(lensPrompts.stdout) as { perPrompt: number[]; runOnly: number[] };
const lensPerPrompt = median(lensParsed.perPrompt);
const lensRunOnly = median(lensParsed.runOnly);
const baselineRuns = Array.from({ length: Math.min(REPS, 3) }, () => runNode([join(ROOT, 'dist', 'bench', 'baseline.js'), dir, JSON.stringify(PROMPTS)]));
const baselineParsed = baselineRuns.map((r) => JSON.parse(r.stdout));
const baselinePerPrompt = median(baselineParsed.flatMap((b) => b.perPrompt));
const baselineWall = median(baselineRuns.map((r) => r.wallMs));
const baselineRss = median(baselineParsed.map((b) => b.maxRssKb / 1024));
// The heatmap of a 32-token prompt against its floor in the same run: the bare forward of that
// prompt plus one MatMul of every layer's rows at every position by W_U (bench/heatmap.ts).
const heatLens = JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'heatmap.js'), 'lens', dir], { LENS_CACHE: cache }).stdout) as { heatmap: number[]; positions: number; maxRssKb: number };
const heatFloor = JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'heatmap.js'), 'floor', dir]).stdout) as { forward: number[]; matmul: number[]; rows: number; d: number; V: number };
const heatmapMs = median(heatLens.heatmap);
const heatFloorMs = median(heatFloor.forward) + median(heatFloor.matmul);
rmSync(cache, { recursive: true, force: true });

const timing = (r: ProcessRun) => ({ wallMs: r.wallMs, maxRssMb: r.maxRssMb });
const row = (name: string, ms: number, rss: number, ratio: number, target: string) => ({ name, ms: Math.round(ms), rssMb: Math.round(rss), ratio: Number(ratio.toFixed(3)), target });
const rows = [
  row('prepare', median(prepare.map((r) => r.wallMs)), median(prepare.map((r) => r.maxRssMb)), median(prepare.map((r) => r.wallMs)) / baselineWall, '≤ 15 s, RSS ≤ 2× model'),
  row('cold', median(cold.map((r) => r.wallMs)), median(cold.map((r) => r.maxRssMb)), median(cold.map((r) => r.wallMs)) / baselineWall, '≤ 2 s (≤ 0.3× baseline), RSS ≤ model + 200 MB'),
  row('per_prompt', lensPerPrompt, NaN, lensPerPrompt / baselinePerPrompt, '≤ 1.5× baseline forward'),
  row('per_prompt, model run only', lensRunOnly, NaN, lensRunOnly / baselinePerPrompt, 'the rest of per_prompt is the record (softmax statistics, top-k, rank)'),
  row('baseline load+forward', baselineWall, baselineRss, 1, 'transformers.js as it comes (process wall)'),
  row('baseline per_prompt', baselinePerPrompt, NaN, 1, 'plain forward, same prompts'),
  row('help', median(help.map((r) => r.wallMs)), median(help.map((r) => r.maxRssMb)), NaN, '≤ 0.3 s'),
  row(`heatmap, ${heatLens.positions} tokens`, heatmapMs, heatLens.maxRssKb / 1024, heatmapMs / heatFloorMs, `≤ 1.5× bare forward + one MatMul [${heatFloor.rows}, ${heatFloor.d}] × [${heatFloor.d}, ${heatFloor.V}]`),
  row('heatmap floor: forward + MatMul', heatFloorMs, NaN, 1, `forward ${Math.round(median(heatFloor.forward))} ms + MatMul ${Math.round(median(heatFloor.matmul))} ms, same run`),
];

const report = {
  date: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length,
  model: { form: FORM, shape: SHAPE, onnxMb: Math.round(modelMb) }, reps: REPS, prompts: PROMPTS.length,
  choices: {
    rewrittenWeights: 'external data, page aligned, mapped by onnxruntime; written by a worker thread so the source protobuf is freed before loading',
    head: 'final norm cloned onto the stacked residuals at the requested position only; tied unembedding as E·hᵀ (streams E [V,d], no packed W_U); the transposed W_U copy is pruned',
    prepacking: 'off for prompts on the command line (fast load), on for --file batches (faster runs)',
    outputsDropped: 'logits for all positions and present.* (pruned from the graph)',
    mergedDecoder: 'flattened to its no-past branch',
    record: 'one exp pass per layer (logZ and entropy together); KL to the final layer as a dot product',
  },
  rows,
  raw: { prepare: prepare.map(timing), cold: cold.map(timing), help: help.map((r) => r.wallMs), lensPerPrompt: lensParsed.perPrompt, lensRunOnly: lensParsed.runOnly, baseline: baselineParsed, heatmap: heatLens, heatmapFloor: heatFloor },
};
writeFileSync(join(ROOT, 'bench', 'report.json'), `${JSON.stringify(report, null, 2)}\n`);

const fmt = (n: number, unit: string) => (Number.isFinite(n) ? `${n}${unit}` : '—');
const lines = [
  `model: random GPT-2-small (${SHAPE.layers} layers, d ${SHAPE.d}, vocab 50257), ${FORM}, ${Math.round(modelMb)} MB; ${REPS} reps, medians`,
  '',
  '| measure | median | peak RSS | ratio to baseline | target |',
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${fmt(r.ms, ' ms')} | ${fmt(r.rssMb, ' MB')} | ${fmt(r.ratio, '×')} | ${r.target} |`),
];
process.stdout.write(`${lines.join('\n')}\n\nreport: bench/report.json\n`);
