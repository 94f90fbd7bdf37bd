// npm run bench: lens against transformers.js as it comes, on random-weight models of
// GPT-2-small's and SmolLM2-135M's exact shapes in the tests' export forms. Medians over repetitions; every
// figure is also given as a ratio to the baseline measured in the same run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT } from '../test/helpers.js';

// The GPT-2-small-shaped model, and a Llama of SmolLM2-135M's shape (30 layers, width 576, 9 heads,
// 3 KV heads, vocabulary 49152, untied head). BENCH_MODELS picks some (comma-separated names);
// BENCH_TINY=1 swaps in tiny shapes to check the benchmark's code path in seconds (no report written).
const TINY = process.env.BENCH_TINY === '1';
interface BenchModel { kind: 'gpt2' | 'llama' | 'genai-q4'; form: string; shape: Record<string, unknown>; label: string; layout?: 'declared' | 'aligned' | 'unaligned'; heatmap?: boolean; lensExtras?: boolean; dtype?: 'q4'; perPromptTarget?: number; loadTargets?: { prepare: string; cold: string } }
const MODELS: Record<string, BenchModel> = {
  'gpt2-small': {
    kind: 'gpt2', form: 'opset14-merged', label: 'random GPT-2-small (12 layers, d 768, vocab 50257)', heatmap: true, lensExtras: true, perPromptTarget: 1.2,
    shape: TINY ? { layers: 2, d: 64, heads: 4, nPositions: 128, seed: 1 } : { layers: 12, d: 768, heads: 12, nPositions: 1024, seed: 1 },
  },
  // The same weights as transformers.js publishes large models: in onnx/model.onnx_data, declared in config.json.
  'gpt2-small-external': {
    kind: 'gpt2', form: 'opset14-merged', layout: 'declared', label: 'random GPT-2-small, weights in model.onnx_data declared in config.json', perPromptTarget: 1.2,
    shape: TINY ? { layers: 2, d: 64, heads: 4, nPositions: 128, seed: 1 } : { layers: 12, d: 768, heads: 12, nPositions: 1024, seed: 1 },
  },
  'smollm2-135m': {
    kind: 'llama', form: 'merged', perPromptTarget: 1.2, label: 'random Llama of SmolLM2-135M\'s shape (30 layers, d 576, 9 heads, 3 KV heads, vocab 49152, untied head)',
    shape: TINY
      ? { family: 'llama', layers: 2, d: 64, heads: 4, kvHeads: 2, ffn: 128, vocab: 1024, nPositions: 128, ropeTheta: 100000, seed: 1 }
      : { family: 'llama', layers: 30, d: 576, heads: 9, kvHeads: 3, ffn: 1536, vocab: 49152, nPositions: 2048, ropeTheta: 100000, seed: 1 },
  },
  // onnxruntime-genai's int4 CPU form, written directly in 4 bits (bench/build-genai-q4.ts).
  'qwen3-0.6b-q4': {
    kind: 'genai-q4', form: 'genai', dtype: 'q4', layout: 'aligned',
    label: 'random Qwen3-0.6B shape in onnxruntime-genai\'s q4 form (28 layers, d 1024, 16/8 heads of 128, q/k norm, vocab 151936, tied)',
    shape: TINY
      ? { family: 'qwen3', layers: 2, d: 64, heads: 4, kvHeads: 2, headDim: 16, ffn: 128, vocab: 1024, nPositions: 128, ropeTheta: 1000000, tied: true, qkNorm: true }
      : { family: 'qwen3', layers: 28, d: 1024, heads: 16, kvHeads: 8, headDim: 128, ffn: 3072, vocab: 151936, nPositions: 40960, ropeTheta: 1000000, tied: true, qkNorm: true },
  },
  // Llama-3.1-8B's shape in the same form; weights at 4096-byte offsets (onnxruntime's writer with
  // align_offset) or back to back (onnx.save_model, as torch.onnx and Optimum write external data).
  ...Object.fromEntries((['aligned', 'unaligned'] as const).map((layout) => [`llama3-8b-q4-${layout}`, {
    kind: 'genai-q4', form: 'genai', dtype: 'q4', layout, heatmap: true, perPromptTarget: 1.3,
    loadTargets: { prepare: '≤ 0.5× baseline, RSS ≤ model files + 1.5 GB', cold: '≤ 0.5× baseline, RSS ≤ model files + 1.5 GB' },
    label: `random Llama-3.1-8B shape in onnxruntime-genai's q4 form (32 layers, d 4096, 32/8 heads, FFN 14336, vocab 128256, untied), ${layout} external data`,
    shape: TINY
      ? { family: 'llama', layers: 2, d: 128, heads: 4, kvHeads: 2, headDim: 32, ffn: 256, vocab: 2048, nPositions: 128, ropeTheta: 500000, tied: false, qkNorm: false }
      : { family: 'llama', layers: 32, d: 4096, heads: 32, kvHeads: 8, headDim: 128, ffn: 14336, vocab: 128256, nPositions: 131072, ropeTheta: 500000, tied: false, qkNorm: false },
  } satisfies BenchModel])),
};
// The 8B-class models take ~6 GB each and minutes to build: only when asked for by name.
const DEFAULT_MODELS = ['gpt2-small', 'gpt2-small-external', 'smollm2-135m', 'qwen3-0.6b-q4'];
const SELECTED = (process.env.BENCH_MODELS ?? DEFAULT_MODELS.join(',')).split(',').map((name) => {
  if (!MODELS[name]) throw new Error(`unknown bench model ${name} (${Object.keys(MODELS).join(', ')})`);
  return name;
});
const REPS = Number(process.env.BENCH_REPS ?? 5);
const PROMPTS = [
  'Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is', 'The quick brown fox jumps over',
  'In the beginning was the word', 'Water boils at one hundred degrees', 'The stock market fell sharply today',
  'She opened the door and saw a', 'My favourite programming language is', 'The capital of Japan is the city of',
];

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

function modelDir(name: string, spec: BenchModel): string {
  const dir = join(ROOT, 'bench', '.cache', `${name}-${spec.form}${TINY ? '-tiny' : ''}`);
  const marker = join(dir, '.complete');
  if (!existsSync(marker)) {
    process.stderr.write(`building a ${spec.label} (${spec.form}) in ${dir} …\n`);
    rmSync(dir, { recursive: true, force: true });
    const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'bench', 'build-model.js'), dir, spec.kind, spec.form, JSON.stringify(spec.shape), spec.layout ?? 'inline'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`building the benchmark model failed (${r.status})`);
    writeFileSync(marker, JSON.stringify(spec.shape));
  }
  return dir;
}

/** Bytes of an entry's files, once per inode: `linked` are hard links to the source's own files, `own` the rest. */
function entryBytes(entryRoot: string, sourceDir: string): { own: number; linked: number } {
  const sourceInodes = new Set(readdirSync(sourceDir, { recursive: true, encoding: 'utf8' }).map((f) => statSync(join(sourceDir, f)).ino));
  let own = 0, linked = 0;
  for (const f of readdirSync(entryRoot, { recursive: true, encoding: 'utf8' })) {
    const s = statSync(join(entryRoot, f));
    if (!s.isFile()) continue;
    if (sourceInodes.has(s.ino)) linked += s.size; else own += s.size;
  }
  return { own, linked };
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
const timing = (r: ProcessRun) => ({ wallMs: r.wallMs, maxRssMb: r.maxRssMb });
const row = (name: string, ms: number, rss: number, ratio: number, target: string) => ({ name, ms: Math.round(ms), rssMb: Math.round(rss), ratio: Number(ratio.toFixed(3)), target });

interface TuneBench {
  eval: { tokens: number; ms: number; forwardMs: number };
  tune: { tokens: number; ms: number; tokensPerSecond: number[]; steps: number; tokensPerStep: number; seqLen: number; curve: { seconds: number; step: number; tuned: number[]; logit: number[] }[] };
}

/** The rows of bench/tune.ts: ms per 1000 tokens for eval and tune, and the held-out KL per layer at the end of the budget (ratio tuned / logit). */
function tuneBenchRows(t: TuneBench) {
  const evalRate = t.eval.tokens / (t.eval.ms / 1000);
  const last = t.tune.curve[t.tune.curve.length - 1];
  const tuneRate = median(t.tune.tokensPerSecond);
  return [
    row('lens eval, ms per 1000 tokens', 1e6 / evalRate, NaN, t.eval.ms / t.eval.forwardMs, `${evalRate.toFixed(1)} tokens/s over ${t.eval.tokens} tokens, model load included; ratio to the bare forward of the same windows (${Math.round(t.eval.forwardMs)} ms)`),
    row('lens tune, ms per 1000 tokens', 1e6 / tuneRate, NaN, NaN, `${tuneRate.toFixed(1)} tokens/s (median over rounds, model loads left out), ${t.tune.steps} steps of ${t.tune.tokensPerStep} tokens in ${Math.round(t.tune.ms / 1000)} s`),
    ...(last ? last.tuned.slice(0, -1).map((kl, l) => row(`lens tune: held-out KL L${l} after ${Math.round(last.seconds)} s`, NaN, NaN, kl / last.logit[l],
      `tuned ${kl.toFixed(3)} vs logit ${last.logit[l].toFixed(3)} nats (must be lower); by time: ${t.tune.curve.map((c) => `${Math.round(c.seconds)} s ${c.tuned[l].toFixed(3)}`).join(', ')}`)) : []),
  ];
}

/** All measures for one model: its rows and raw timings. */
function benchModel(name: string, spec: BenchModel) {
  const dir = modelDir(name, spec);
  const dtype = spec.dtype ?? 'fp32';
  const dtypeArgs = ['--dtype', dtype];
  const modelMb = readdirSync(join(dir, 'onnx')).filter((f) => /^model(_q4)?\.onnx/.test(f)).reduce((sum, f) => sum + statSync(join(dir, 'onnx', f)).size, 0) / 2 ** 20;

  // prepare: the first-ever run (fresh cache each time).
  const prepare: ProcessRun[] = [];
  let warmCache: string | undefined;
  for (let i = 0; i < Math.min(REPS, 3); i++) {
    const cache = mkdtempSync(join(tmpdir(), 'lens-bench-cache-'));
    prepare.push(runNode([lensBin, 'topk', 'Paris is capital of', '--model', dir, ...dtypeArgs], { LENS_CACHE: cache }));
    if (i < Math.min(REPS, 3) - 1) rmSync(cache, { recursive: true, force: true });
    else warmCache = cache;
  }
  const cache = warmCache!;
  const entry = entryBytes(join(cache, 'lens'), dir);
  const cold = Array.from({ length: REPS }, () => runNode([lensBin, 'topk', 'Paris is capital of', '--model', dir, ...dtypeArgs], { LENS_CACHE: cache }));

  const lensPrompts = runNode([join(ROOT, 'dist', 'bench', 'lens-prompts.js'), dir, JSON.stringify(PROMPTS), dtype], { LENS_CACHE: cache });
  const lensParsed = JSON.parse(lensPrompts.stdout) as { perPrompt: number[]; runOnly: number[] };
  const lensPerPrompt = median(lensParsed.perPrompt);
  const lensRunOnly = median(lensParsed.runOnly);
  const baselineRuns = Array.from({ length: Math.min(REPS, 3) }, () => runNode([join(ROOT, 'dist', 'bench', 'baseline.js'), dir, JSON.stringify(PROMPTS), dtype]));
  const baselineParsed = baselineRuns.map((r) => JSON.parse(r.stdout));
  const baselinePerPrompt = median(baselineParsed.flatMap((b) => b.perPrompt));
  const baselineWall = median(baselineRuns.map((r) => r.wallMs));
  const baselineRss = median(baselineParsed.map((b) => b.maxRssKb / 1024));
  // The heatmap of a 32-token prompt against its floor in the same run: the bare forward of that
  // prompt plus one product of every layer's rows at every position by the model's own head op
  // (a float MatMul by W_U, or MatMulNBits for a q4 head; bench/heatmap.ts).
  const heat = spec.heatmap ? {
    lens: JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'heatmap.js'), 'lens', dir, dtype], { LENS_CACHE: cache }).stdout) as { heatmap: number[]; positions: number; forwards: number; maxRssKb: number },
    // The same with the record statistics on the main thread only: what the worker thread saves.
    oneThread: JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'heatmap.js'), 'lens', dir, dtype], { LENS_CACHE: cache, LENS_STATS_THREADS: '1' }).stdout) as { heatmap: number[] },
    floor: JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'heatmap.js'), 'floor', dir, dtype]).stdout) as { forward: number[]; matmul: number[]; rows: number; d: number; V: number; op: string },
  } : undefined;
  // The tuned lens on GPT-2-small's shape: loading its 28 MB params.pt, and its run against the logit lens's.
  const tuned = spec.lensExtras
    ? JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'tuned.js'), dir, JSON.stringify(PROMPTS), String(REPS)], { LENS_CACHE: cache }).stdout) as { paramsMb: number; load: number[]; loadCpu: number[]; logit: number[]; tuned: number[] }
    : undefined;
  // lens eval and lens tune on GPT-2-small's shape (bench/tune.ts): a 10-minute training budget by default.
  const tuneBudget = Number(process.env.BENCH_TUNE_SECONDS ?? (TINY ? 5 : 600));
  const tuning = spec.lensExtras
    ? JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'tune.js'), dir, String(tuneBudget), ...(TINY ? ['4', '64', '32', '128'] : ['200', '2048', '512', '4096'])], { LENS_CACHE: cache }).stdout) as TuneBench
    : undefined;
  const tuneRows = tuning ? tuneBenchRows(tuning) : [];
  // attribute at the last position, one given target (one model run), GPT-2-small's shape only.
  const attribution = spec.lensExtras
    ? JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'attribute.js'), dir, JSON.stringify(PROMPTS), dtype], { LENS_CACHE: cache }).stdout) as { plain: number[]; heads: number[] }
    : undefined;
  const attributionRows = attribution ? [
    row('attribute, one position, per prompt', median(attribution.plain), NaN, median(attribution.plain) / baselinePerPrompt, '≤ 1.3× baseline forward (the command\'s own loop: parts computed, record built)'),
    row('attribute --heads, one position, per prompt', median(attribution.heads), NaN, median(attribution.heads) / baselinePerPrompt, '≤ 1.5× baseline forward'),
  ] : [];
  // lens serve on the same warm cache: its first answer after start, then warm requests one prompt each.
  const served = JSON.parse(runNode([join(ROOT, 'dist', 'bench', 'serve.js'), dir, JSON.stringify(PROMPTS), dtype], { LENS_CACHE: cache }).stdout) as { firstAnswer: number; warm: number[] };
  rmSync(cache, { recursive: true, force: true });
  const coldMs = median(cold.map((r) => r.wallMs));
  const serveRows = [
    row('serve: first answer after start', served.firstAnswer, NaN, served.firstAnswer / coldMs, `≤ the CLI's cold run (${Math.round(coldMs)} ms); ratio to it, not to the baseline`),
    row('serve: warm POST /api/run, one prompt', median(served.warm), NaN, median(served.warm) / lensPerPrompt, `≤ 1.2× the CLI's per_prompt (${Math.round(lensPerPrompt)} ms); ratio to it, not to the baseline`),
  ];
  const tunedRows = tuned ? [
    row(`tuned lens: load params.pt (${tuned.paramsMb.toFixed(0)} MB)`, median(tuned.load), NaN, NaN, `≤ 200 ms (CPU time ${Math.round(median(tuned.loadCpu))} ms)`),
    row('tuned lens: model run per prompt', median(tuned.tuned), NaN, median(tuned.tuned) / median(tuned.logit), `≤ 1.1× the logit lens's run (${Math.round(median(tuned.logit))} ms, same prompts, interleaved); ratio to it, not to the baseline`),
  ] : [];
  const heatRows = heat ? (() => {
    const heatmapMs = median(heat.lens.heatmap);
    const floorMs = median(heat.floor.forward) + median(heat.floor.matmul);
    return [
      row(`heatmap, ${heat.lens.positions} tokens`, heatmapMs, heat.lens.maxRssKb / 1024, heatmapMs / floorMs,
        `≤ 1.3× its floor: bare forward + one head product [${heat.floor.rows}, ${heat.floor.d}] × [${heat.floor.d}, ${heat.floor.V}]; ratio to the floor, not to the baseline${heat.lens.forwards > 1 ? `; the logits budget splits the positions into ${heat.lens.forwards} lens forwards` : ''}`),
      row('heatmap, record statistics on one thread', median(heat.oneThread.heatmap), NaN, median(heat.oneThread.heatmap) / floorMs, 'LENS_STATS_THREADS=1, same run: what the statistics worker saves'),
      row('heatmap floor: forward + head product', floorMs, NaN, 1, `forward ${Math.round(median(heat.floor.forward))} ms + ${heat.floor.op} ${Math.round(median(heat.floor.matmul))} ms, same run`),
    ];
  })() : [];

  const rows = [
    // Each row names its model; help is measured once, below.
    row('prepare', median(prepare.map((r) => r.wallMs)), median(prepare.map((r) => r.maxRssMb)), median(prepare.map((r) => r.wallMs)) / baselineWall, spec.loadTargets?.prepare ?? '≤ 15 s, RSS ≤ 2× model'),
    row('cold', median(cold.map((r) => r.wallMs)), median(cold.map((r) => r.maxRssMb)), median(cold.map((r) => r.wallMs)) / baselineWall, spec.loadTargets?.cold ?? '≤ 2 s (≤ 0.3× baseline), RSS ≤ model + 200 MB'),
    row('per_prompt', lensPerPrompt, NaN, lensPerPrompt / baselinePerPrompt, `≤ ${spec.perPromptTarget ?? 1.5}× baseline forward`),
    row('per_prompt, model run only', lensRunOnly, NaN, lensRunOnly / baselinePerPrompt, 'the rest of per_prompt is the record (softmax statistics, top-k, rank)'),
    row('baseline load+forward', baselineWall, baselineRss, 1, 'transformers.js as it comes (process wall)'),
    row('baseline per_prompt', baselinePerPrompt, NaN, 1, 'plain forward, same prompts'),
    ...heatRows,
    ...attributionRows,
    ...tunedRows,
    ...tuneRows,
    ...serveRows,
  ].map((r) => ({ ...r, name: `${name}: ${r.name}` }));
  const MB = 2 ** 20;
  return {
    model: { name, label: spec.label, form: spec.form, shape: spec.shape, onnxMb: Math.round(modelMb) }, rows,
    entrySize: { name, modelMb: Math.round(modelMb), ownMb: Number((entry.own / MB).toFixed(1)), linkedMb: Number((entry.linked / MB).toFixed(1)) },
    raw: { prepare: prepare.map(timing), cold: cold.map(timing), lensPerPrompt: lensParsed.perPrompt, lensRunOnly: lensParsed.runOnly, baseline: baselineParsed, heatmap: heat, tuned, tune: tuning, serve: served },
  };
}

const results = SELECTED.map((name) => benchModel(name, MODELS[name]));
const help = Array.from({ length: REPS }, () => runNode([lensBin, '--help']));
const rows = [...results.flatMap((r) => r.rows), row('help', median(help.map((r) => r.wallMs)), median(help.map((r) => r.maxRssMb)), NaN, '≤ 0.3 s')];

const report = {
  date: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length,
  models: results.map((r) => r.model), reps: REPS, prompts: PROMPTS.length,
  choices: {
    rewrittenWeights: 'external data, page aligned, mapped by onnxruntime; written by a worker thread so the source protobuf is freed before loading',
    head: 'final norm cloned onto the stacked residuals at the requested position only; tied unembedding as E·hᵀ (streams E [V,d], no packed W_U); the transposed W_U copy is pruned',
    prepacking: 'off for prompts on the command line (fast load), on for --file batches (faster runs)',
    outputsDropped: 'logits for all positions and present.* (pruned from the graph)',
    mergedDecoder: 'flattened to its no-past branch',
    record: 'one exp pass per layer (logZ and entropy together); KL to the final layer as a dot product',
    sourceWeights: 'external-data sources are hard-linked into the entry and read in place (onnxruntime refuses symlinks that leave the model folder); inline sources get one extracted copy',
  },
  rows,
  entrySizes: results.map((r) => r.entrySize),
  raw: { models: results.map((r) => ({ name: r.model.name, ...r.raw })), help: help.map((r) => r.wallMs) },
};
const reportPath = TINY ? join(tmpdir(), 'lens-bench-tiny-report.json') : join(ROOT, 'bench', 'report.json');
writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);

const fmt = (n: number, unit: string) => (Number.isFinite(n) ? `${n}${unit}` : '—');
const lines = [
  ...results.map((r) => `${r.model.name}: ${r.model.label}, ${r.model.form}, ${r.model.onnxMb} MB${TINY ? ' (BENCH_TINY: tiny shape, code path only)' : ''}`),
  `${REPS} reps, medians`,
  '',
  '| measure | median | peak RSS | ratio to baseline | target |',
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${fmt(r.ms, ' ms')} | ${fmt(r.rssMb, ' MB')} | ${fmt(r.ratio, '×')} | ${r.target} |`),
  '',
  '| model | model files | cache entry, own files | cache entry, hard links to the source |',
  '|---|---|---|---|',
  ...results.map(({ entrySize: e }) => `| ${e.name} | ${e.modelMb} MB | ${e.ownMb} MB | ${e.linkedMb} MB |`),
];
process.stdout.write(`${lines.join('\n')}\n\nreport: ${reportPath}\n`);
