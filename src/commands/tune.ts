// `lens tune`: trains a tuned lens's translators on a text, on the CPU, and writes them as
// tuned-lens does (config.json, params.pt). The model runs once per chunk of positions with the
// current translators; the gradients are computed here (src/lens/tune.ts). A checkpoint
// (translators and momentum in one file, then tune-state.json naming it) makes --resume exact.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, usageError } from '../errors.js';
import { accumulateTranslatorGradient, klAndLogitGradient, finalDistribution, learningRateAt, sgdStep, type TuneHead } from '../lens/tune.js';
import type { Dtype } from '../model/paths.js';
import type { HeadProjection } from '../model/head-projection.js';
import type { LensModel } from '../model/runtime.js';
import type { Translators } from '../tuned/translators.js';

export interface TuneOptions {
  model: string; dtype: Dtype; revision?: string; offline: boolean; env: NodeJS.ProcessEnv;
  /** The training text. */
  data: string;
  /** The output directory (created; must be empty unless resuming). */
  out: string;
  steps?: number;
  tokensPerStep?: number;
  seqLen?: number;
  resume?: boolean;
  /** Steps between checkpoints (default: every 10 and the last). */
  checkpointEvery?: number;
  /** Stop (after its checkpoint) once this step is done: an interruption at a known point, for tests. */
  stopAfter?: number;
  /** After each step: its number (1-based), the steps, the step's loss (summed over layers), tokens per second and the seconds left at this pace. */
  onStep?: (step: number, steps: number, loss: number, tokensPerSecond: number, secondsLeft: number) => void;
  progress?: (done: number, total: number | undefined, file: string) => void;
}

/** What tune-state.json records: the run's settings, where it is, and the loss of every step done. */
export interface TuneState {
  model: string; dataBytes: number; steps: number; tokensPerStep: number; seqLen: number;
  step: number; checkpoint: string;
  /** Per step, the mean KL over the step's positions summed over the layers 0..L−1, nats. */
  losses: number[];
}

/** What `lens tune` reports at the end. */
export interface TuneResult { out: string; steps: number; losses: number[]; tokensPerStep: number; tokensPerSecond: number }

const DEFAULTS = { steps: 250, tokensPerStep: 4096, seqLen: 512, checkpointEvery: 10 };
/** 64 Mi lens logits per forward at most, as the analysis commands. */
const LOGITS_BUDGET = 1 << 26;
const STATE_FILE = 'tune-state.json';

/**
 * The settings of a run, checked before the model loads: from the flags, or on --resume from
 * tune-state.json (flags that differ are refused). A new run's model and seqLen are completed once
 * the model is loaded. Throws UserError.
 */
function settings(options: TuneOptions, dataBytes: number): { state: TuneState; resumed: boolean } {
  const statePath = join(options.out, STATE_FILE);
  if (options.resume) {
    if (!existsSync(statePath)) throw usageError(`--resume: ${options.out} holds no training run (no ${STATE_FILE})`, 'start one without --resume');
    let state: TuneState;
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8')) as TuneState;
    } catch (error) {
      throw new UserError(`--resume: cannot read ${statePath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    for (const [flag, given, saved] of [['--steps', options.steps, state.steps], ['--tokens-per-step', options.tokensPerStep, state.tokensPerStep], ['--seq-len', options.seqLen, state.seqLen]] as const) {
      if (given !== undefined && given !== saved) throw usageError(`--resume: the run in ${options.out} has ${flag} ${saved}, not ${given}`, `leave ${flag} out to continue it`);
    }
    if (state.dataBytes !== dataBytes) throw usageError(`--resume: the run in ${options.out} was trained on ${state.dataBytes} bytes of text; --data ${options.data} has ${dataBytes}`);
    return { state, resumed: true };
  }
  if (existsSync(options.out) && readdirSync(options.out).length > 0) {
    throw usageError(`--out ${options.out} is not empty`, existsSync(statePath) ? 'add --resume to continue its training run' : 'give a new or empty directory');
  }
  const seqLen = options.seqLen ?? DEFAULTS.seqLen;
  return {
    state: { model: '', dataBytes, steps: options.steps ?? DEFAULTS.steps, tokensPerStep: options.tokensPerStep ?? DEFAULTS.tokensPerStep, seqLen, step: 0, checkpoint: '', losses: [] },
    resumed: false,
  };
}

/** The final norm and the whole head, read once through the graph's attribution outputs. Throws UserError for a model without them. */
async function readHead(model: LensModel, firstToken: number): Promise<TuneHead> {
  if (!model.attributable) throw new UserError(`lens tune needs the final norm and head of ${model.id}, and its graph exposes none`, 'the families lens attributes (lens inspect says which) can be tuned');
  const targets = Array.from({ length: model.vocabSize }, (_, v) => v);
  const run = await model.run([firstToken], [0], 'norm', { attribution: { targets } });
  const a = run.attribution!;
  return { unembed: a.unembedRows, headScale: a.headScale, softcap: a.softcap, gain: a.gain, bias: a.bias, epsilon: a.epsilon, centred: a.centred };
}

/** Trains, checkpointing as it goes, and writes the lens. Throws UserError on unusable input or output. */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(options.data);
  } catch (error) {
    throw usageError(`cannot read --data ${options.data}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const { state, resumed } = settings(options, bytes.length);
  const { loadLensModel } = await import('../model/runtime.js');
  const model = await loadLensModel(options.model, { ...options, batch: true });
  let projection: HeadProjection | undefined;
  try {
    if (model.width === undefined) throw new UserError(`cannot tune a lens for ${model.id}: its config.json names no hidden size`);
    if (!resumed) Object.assign(state, { model: model.id, seqLen: Math.min(state.seqLen, model.contextLength) });
    else if (state.model !== model.id) throw usageError(`--resume: the run in ${options.out} trains a lens for ${state.model}, not ${model.id}`);
    const ids = model.encode(new TextDecoder('utf-8').decode(bytes));
    if (ids.length < 2) throw new UserError(`--data ${options.data} has ${ids.length} token${ids.length === 1 ? '' : 's'}; tune needs at least 2`);
    const sequences: number[][] = [];
    for (let start = 0; start + state.seqLen <= ids.length; start += state.seqLen) sequences.push(ids.slice(start, start + state.seqLen));
    if (sequences.length === 0) sequences.push(ids.slice(0, state.seqLen));
    const perStep = Math.max(1, Math.ceil(state.tokensPerStep / sequences[0].length));

    const L = model.layers, d = model.width;
    const translators: Translators = { count: L, width: d, weight: new Float32Array(L * d * d), bias: new Float32Array(L * d) };
    const momentum = { weight: new Float32Array(L * d * d), bias: new Float32Array(L * d) };
    if (resumed) {
      const { readCheckpoint } = await import('../model/tune-files.js');
      readCheckpoint(join(options.out, state.checkpoint), translators, momentum);
    }
    const head = await readHead(model, ids[0]);
    projection = await (await import('../model/head-projection.js')).createHeadProjection(head.unembed, model.vocabSize, d);
    const { writeCheckpoint, writeLensFiles } = await import('../model/tune-files.js');
    const every = options.checkpointEvery ?? DEFAULTS.checkpointEvery;
    const started = Date.now();
    let tokensDone = 0, stepsDone = 0;
    const V = model.vocabSize;
    while (state.step < state.steps) {
      const gradW = new Float64Array(L * d * d), gradB = new Float64Array(L * d);
      const batch = Array.from({ length: perStep }, (_, j) => sequences[(state.step * perStep + j) % sequences.length]);
      const tokens = batch.reduce((sum, s) => sum + s.length, 0);
      const chunk = Math.max(1, Math.floor(LOGITS_BUDGET / ((L + 1) * V)));
      let loss = 0;
      for (const sequence of batch) {
        for (let from = 0; from < sequence.length; from += chunk) {
          const positions = Array.from({ length: Math.min(chunk, sequence.length - from) }, (_, i) => from + i);
          const P = positions.length;
          const run = await model.run(sequence, positions, 'tuned', { translators });
          const finals = positions.map((_, p) => finalDistribution(run.logits.subarray((L * P + p) * V, (L * P + p + 1) * V)));
          for (let l = 0; l < L; l++) {
            const gradZ = new Float32Array(P * V);
            positions.forEach((_, p) => {
              const row = l * P + p;
              loss += klAndLogitGradient(run.logits.subarray(row * V, (row + 1) * V), finals[p], 1 / tokens, head.softcap, gradZ.subarray(p * V, (p + 1) * V)) / tokens;
            });
            const gradY = await projection.project(gradZ, P);
            const w = translators.weight.subarray(l * d * d, (l + 1) * d * d), b = translators.bias.subarray(l * d, (l + 1) * d);
            const gw = gradW.subarray(l * d * d, (l + 1) * d * d), gb = gradB.subarray(l * d, (l + 1) * d);
            positions.forEach((_, p) => {
              const scaled = Float64Array.from(gradY.subarray(p * d, (p + 1) * d), (g) => g * head.headScale);
              accumulateTranslatorGradient(head, run.hidden.subarray((l * P + p) * d, (l * P + p + 1) * d), w, b, scaled, gw, gb);
            });
          }
        }
      }
      sgdStep([translators.weight, translators.bias], [gradW, gradB], [momentum.weight, momentum.bias], learningRateAt(state.step, state.steps));
      state.step++;
      state.losses.push(loss);
      tokensDone += tokens;
      const seconds = Math.max(1e-3, (Date.now() - started) / 1000);
      stepsDone++;
      options.onStep?.(state.step, state.steps, loss, tokensDone / seconds, (seconds / stepsDone) * (state.steps - state.step));
      const stopping = options.stopAfter === state.step;
      if (state.step % every === 0 || state.step === state.steps || stopping) {
        writeCheckpoint(options.out, state, translators, momentum);
        writeLensFiles(options.out, model.id, translators);
      }
      if (stopping) break;
    }
    return { out: options.out, steps: state.step, losses: state.losses, tokensPerStep: perStep * sequences[0].length, tokensPerSecond: tokensDone / Math.max(1e-3, (Date.now() - started) / 1000) };
  } finally {
    await projection?.release();
    await model.dispose();
  }
}

/** The summary `lens tune` prints: where the lens is and how the loss went. */
export function renderTune(result: TuneResult): string {
  const first = result.losses[0], last = result.losses[result.losses.length - 1];
  return `lens tune · ${result.steps} steps of ${result.tokensPerStep} tokens · loss (KL summed over layers, nats) ${first?.toFixed(4)} → ${last?.toFixed(4)} · ${result.tokensPerSecond.toFixed(1)} tokens/s · lens in ${result.out}`;
}
