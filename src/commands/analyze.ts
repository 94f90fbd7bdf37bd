// What every command shares: load the model once, check each prompt, run the lens once per
// prompt for all its positions (and once more per multi-token target), and build the records.
// Commands differ only in their defaults and how they render.
import { usageError } from '../errors.js';
import { buildRecord, siteStats, type LensRecord, type Target, type TargetInput, type TargetOrigin } from '../lens/record.js';
import { IndexSpecError, resolveIndexSpec, selectLayers, type IndexSpec } from '../lens/spec.js';
import type { Dtype } from '../model/paths.js';
import type { LensModel, LensRun } from '../model/runtime.js';
import { StatsPool } from '../lens/stats-pool.js';
import { palette } from '../render/style.js';
import type { View } from '../render/view.js';
import type { TunedLens } from '../tuned/lens-dir.js';

/** A target as the user gave it: a text (all its tokens) or a token id. */
export type TargetSpec = { text: string } | { id: number };


export interface AnalyzeOptions {
  model: string;
  dtype: Dtype;
  /** Hub revision of a repo id (branch, tag or commit). */
  revision?: string;
  raw: boolean;
  /** Token positions to read (`--position`); negatives count from the end. */
  positions: IndexSpec;
  k: number;
  offline: boolean;
  /** Targets to follow; when empty, `lensTargets` (if set) picks them from the lens at each position. */
  targets: TargetSpec[];
  /** Where non-empty `targets` came from (default 'given'). */
  targetOrigin?: 'given' | 'seed';
  lensTargets?: 'top1' | 'top2';
  /** Also read the residual between each block's attention and MLP. */
  sublayers?: boolean;
  /** The lens (default 'logit'); 'tuned' needs `tunedLens`, and excludes `raw` and `sublayers`. */
  lens?: 'logit' | 'tuned';
  /** The tuned lens: a directory (config.json and params.pt or params.safetensors), or a lens name in tuned-lens's Space. */
  tunedLens?: string;
  env: NodeJS.ProcessEnv;
  /** One-line warnings for stderr. */
  warn: (message: string) => void;
  /** Download progress, when it is shown. */
  progress?: (done: number, total: number | undefined, file: string) => void;
  onPrepare?: () => void;
  /** Prompts come in a batch (--file): favour per-prompt speed over load time. */
  batch?: boolean;
  /** Cancels the model's download under way (the library's openLens signal). */
  signal?: AbortSignal;
  /** Most lens logits (sites × positions × vocabulary) one forward may return; more positions take more forwards. */
  logitsBudget?: number;
}

/**
 * 64 Mi logits (256 MB of float32): 13 sites of GPT-2-small at 98 positions, so a heatmap of a
 * prompt up to 98 tokens is one forward, and of a whole 1024-token prompt 11 forwards, not 2.7 GB.
 */
export const LOGITS_BUDGET = 1 << 26;

/** All of one prompt's results: one record per selected position, ascending. */
export interface PromptResult {
  prompt: string;
  records: LensRecord[];
  /** Where the targets came from; undefined when there are none. */
  targetOrigin?: TargetOrigin;
}

/** The absolute positions `spec` selects in a prompt of `length` tokens, ascending. Throws UserError. */
export function resolvePositions(spec: IndexSpec, length: number): number[] {
  try {
    return resolveIndexSpec(spec, length);
  } catch (error) {
    if (!(error instanceof IndexSpecError)) throw error;
    const hint = `use 0..${length - 1} or -${length}..-1`;
    if (error.index === undefined) throw usageError(`--position ${spec.text} selects no position of the prompt's ${length} tokens`, hint);
    const which = spec.items.length === 1 ? `${error.index}` : `${spec.text}: ${error.index}`;
    throw usageError(`--position ${which} is outside the prompt's ${length} tokens`, hint);
  }
}

/** What one run reads from a loaded model: the per-prompt part of AnalyzeOptions. */
export type RunRequest = Pick<AnalyzeOptions, 'raw' | 'positions' | 'k' | 'targets' | 'targetOrigin' | 'lensTargets' | 'sublayers' | 'logitsBudget'>;

/** A loaded model and the one way records are made from it, shared by the commands and the library. */
export interface Analyzer {
  model: LensModel;
  /**
   * Checks `request` against the model (targets resolved, sub-layer sites present) and returns the
   * function that analyzes one prompt; `checkpoint` runs before each forward (to stop a cancelled run);
   * `lens` picks the logit lens of a model opened with a tuned one ('tuned' without one is a UserError).
   * Throws UserError on bad input, here or from the returned function.
   */
  plan(request: RunRequest, checkpoint?: () => void, lens?: 'logit' | 'tuned'): (prompt: string) => Promise<PromptResult>;
  /** Whether a tuned lens is loaded: plan reads through it unless asked for the logit lens. */
  tuned: boolean;
  /** The tuned lens loaded, fitted to the model (undefined without one). */
  tunedLens?: TunedLens;
  dispose(): Promise<void>;
}

/** Loads the model of `options` (downloading and preparing it as needed). Throws UserError. */
export async function openAnalyzer(options: Omit<AnalyzeOptions, keyof RunRequest>): Promise<Analyzer> {
  // The runtime pulls in transformers.js and onnxruntime: load it only when a command runs.
  const { loadLensModel } = await import('../model/runtime.js');
  const { resolveModel } = await import('../model/hub.js');
  const hub = options.lens === 'tuned' ? await import('../model/tuned-hub.js') : undefined;
  // A lens given by --tuned-lens is read before the model is resolved, so that a bad file fails fast;
  // without one, the Space's lens is looked up under the names the resolved model suggests.
  let tuned = hub && options.tunedLens !== undefined ? await hub.loadTunedLens(options.tunedLens, options) : undefined;
  const source = await resolveModel(options.model, options);
  if (hub && !tuned) tuned = await hub.findTunedLensFor(source, options);
  const model = await loadLensModel(source, options);
  try {
    if (tuned) (await import('../tuned/lens-dir.js')).checkLensFits(tuned, model);
  } catch (error) {
    await model.dispose();
    throw error;
  }
  // LENS_STATS_THREADS=1: the record statistics on the main thread only (the benchmark's comparison).
  const pool = new StatsPool(options.env.LENS_STATS_THREADS === '1' ? 1 : 2);
  return {
    model, tuned: tuned !== undefined, tunedLens: tuned, dispose: async () => { await pool.close(); await model.dispose(); },
    plan: (request, checkpoint, lens) => {
      if (lens === 'tuned' && !tuned) throw usageError('the tuned lens is not loaded', 'open the model with --lens tuned --tuned-lens DIR|NAME');
      return planRuns(model, lens === 'logit' ? undefined : tuned, request, checkpoint ?? (() => {}), pool);
    },
  };
}

function planRuns(model: LensModel, tuned: TunedLens | undefined, options: RunRequest, checkpoint: () => void, pool: StatsPool): (prompt: string) => Promise<PromptResult> {
  if (tuned && options.raw) throw usageError('--raw and --lens tuned do not go together', 'the tuned lens always ends with the final norm');
  if (tuned && options.sublayers) throw usageError('--sublayers and --lens tuned do not go together', 'a tuned lens has translators for the block outputs only');
  if (options.sublayers && !model.midSites) {
    throw usageError(`--sublayers: ${model.id} has no residual between attention and MLP in its blocks (attention and MLP run in parallel, as in GPT-J and GPT-NeoX)`);
  }
  const given = options.targets.map((spec) => resolveTarget(spec, model));
  const mode = tuned ? 'tuned' : options.raw ? 'raw' : 'norm';
  const runOptions = { sublayers: options.sublayers === true, translators: tuned?.translators };
  const V = model.vocabSize;
  const forward = (ids: number[], positions: number[]) => { checkpoint(); return model.run(ids, positions, mode, runOptions); };
  return async (prompt) => {
    const ids = encodePrompt(prompt, model);
    const positions = resolvePositions(options.positions, ids.length);
    const multi = given.filter((t) => t.ids.length > 1);
    if (multi.length > 0) {
      const t = multi[0];
      if (positions.length !== 1 || positions[0] !== ids.length - 1) {
        throw usageError(`target ${JSON.stringify(t.text)} is ${t.ids.length} tokens: several-token targets are read at the prompt's last position only`, 'use --position -1, or a single-token target');
      }
      const longest = Math.max(...multi.map((m) => m.ids.length));
      if (ids.length + longest - 1 > model.contextLength) {
        throw usageError(`prompt and target are ${ids.length + longest - 1} tokens; ${model.id} reads at most ${model.contextLength}`, 'shorten the prompt or the target');
      }
    }
    // A several-token target: one forward over the prompt and its first m−1 tokens, read at p … p+m−1.
    // Causal attention leaves position p as it is for the prompt alone, so the first such run also
    // gives the record's own statistics (p is then the only position).
    const forced = new Map<Target, LensRun>();
    for (const t of multi) {
      const p = ids.length - 1;
      forced.set(t, await forward([...ids, ...t.ids.slice(0, -1)], t.ids.map((_, i) => p + i)));
    }
    const rowsAt = (r: LensRun, P: number, pi: number) => r.sites.map((_, s) => r.logits.subarray((s * P + pi) * V, (s * P + pi + 1) * V));
    const tokens = ids.map((id) => ({ id, text: model.tokenText(id) }));
    const record = (run: LensRun, P: number, pi: number, position: number, stats = siteStats(rowsAt(run, P, pi), options.k)) => {
      const siteLogits = rowsAt(run, P, pi);
      let targets: TargetInput[] = given.map((t) => {
        const r = forced.get(t);
        return r ? { ...t, pieceLogits: t.ids.map((_, i) => rowsAt(r, t.ids.length, i)) } : t;
      });
      if (given.length === 0 && options.lensTargets) targets = surfacedTargets(stats.map((s) => s.top), options.lensTargets, model.tokenText);
      return buildRecord({ model: model.id, mode, prompt, tokens, position, sites: run.sites, siteLogits, stats, k: options.k, targets, tokenText: model.tokenText });
    };
    const records: LensRecord[] = [];
    if (multi.length > 0) {
      records.push(record(forced.get(multi[0])!, multi[0].ids.length, 0, positions[0]));
    } else {
      // All positions in one forward, unless their logits would pass the budget: then in chunks.
      const sites = options.sublayers ? 2 * model.layers + 1 : model.layers + 1;
      const chunk = Math.max(1, Math.floor((options.logitsBudget ?? LOGITS_BUDGET) / (sites * V)));
      for (let start = 0; start < positions.length; start += chunk) {
        const part = positions.slice(start, start + chunk);
        pool.warm(part.length * sites * V);
        const run = await forward(ids, part);
        const stats = await pool.siteStatsOf(part.map((_, pi) => rowsAt(run, part.length, pi)), options.k);
        part.forEach((position, pi) => records.push(record(run, part.length, pi, position, stats[pi])));
      }
    }
    const targetOrigin: TargetOrigin | undefined = given.length > 0 ? options.targetOrigin ?? 'given'
      : options.lensTargets ? (options.lensTargets === 'top1' ? 'lens-top1' : 'lens-top2') : undefined;
    return { prompt, records, targetOrigin };
  };
}

/** Runs the lens on each prompt in turn, yielding each prompt's records. Throws UserError on bad input. */
export async function* analyzePrompts(prompts: AsyncIterable<string> | Iterable<string>, options: AnalyzeOptions): AsyncGenerator<PromptResult> {
  const analyzer = await openAnalyzer(options);
  try {
    const analyzeOne = analyzer.plan(options);
    for await (const prompt of prompts) yield await analyzeOne(prompt);
  } finally {
    await analyzer.dispose();
  }
}

/** Runs the lens on each prompt in turn, yielding one record per prompt per position. Throws UserError on bad input. */
export async function* analyze(prompts: AsyncIterable<string> | Iterable<string>, options: AnalyzeOptions): AsyncGenerator<LensRecord> {
  for await (const result of analyzePrompts(prompts, options)) yield* result.records;
}

/**
 * Targets that follow the lens at one position, from each site's top tokens [sites][≥2] (last = final
 * layer): 'top1' the distinct top-1 tokens, the final layer's first, then the latest sites', at most 3;
 * 'top2' the final layer's two best.
 */
export function surfacedTargets(tops: number[][], how: 'top1' | 'top2', tokenText: (id: number) => string): Target[] {
  const ids = how === 'top2' ? tops[tops.length - 1].slice(0, 2) : [...new Set(tops.map((t) => t[0]).reverse())].slice(0, 3);
  return ids.map((id) => ({ text: tokenText(id), ids: [id] }));
}

/** A prompt's token ids. Throws UserError for an empty prompt or one longer than the model's context. */
export function encodePrompt(prompt: string, model: Pick<LensModel, 'encodePrompt' | 'contextLength' | 'id'>): number[] {
  if (prompt.length === 0) throw usageError('empty prompt', 'give a prompt with at least one character');
  const ids = model.encodePrompt(prompt);
  if (ids.length === 0) throw usageError(`prompt ${JSON.stringify(prompt)} encodes to no tokens`);
  if (ids.length > model.contextLength) {
    throw usageError(`prompt is ${ids.length} tokens; ${model.id} reads at most ${model.contextLength}`, 'shorten the prompt');
  }
  return ids;
}

/** A target's text and token ids. Throws UserError for an id outside the vocabulary or a text with no tokens. */
export function resolveTarget(spec: TargetSpec, model: Pick<LensModel, 'encode' | 'tokenText' | 'vocabSize'>): Target {
  if ('id' in spec) {
    if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id >= model.vocabSize) {
      throw usageError(`token id ${spec.id} is outside the vocabulary (0..${model.vocabSize - 1})`);
    }
    return { text: model.tokenText(spec.id), ids: [spec.id] };
  }
  if (spec.text.length === 0) throw usageError('empty target', 'give a target text such as " football" or a token id');
  const ids = model.encode(spec.text);
  if (ids.length === 0) throw usageError(`target ${JSON.stringify(spec.text)} encodes to no tokens`);
  return { text: spec.text, ids };
}


export type CommandOutput = AsyncGenerator<{ result: PromptResult; text: string }>;
/** A command: the prompts' results with their human rendering. `layers` is the parsed `--layers`. */
export type Command = (prompts: AsyncIterable<string> | Iterable<string>, options: AnalyzeOptions, view: { color: boolean; layers?: IndexSpec }) => CommandOutput;

/** The layers `--layers` keeps for records whose final layer is `finalLayer`. Throws UserError. */
export function keptLayers(spec: IndexSpec | undefined, finalLayer: number): number[] | undefined {
  if (!spec) return undefined;
  try {
    return selectLayers(spec, finalLayer);
  } catch (error) {
    if (!(error instanceof IndexSpecError)) throw error;
    throw usageError(error.index === undefined ? `--layers ${spec.text} selects no layer of 0..${finalLayer}` : `--layers ${error.index} is outside the layers 0..${finalLayer}`);
  }
}

/** A command that renders each prompt's result with `render` (e.g. perRecord(renderTopk)). */
export function renderingCommand(render: (result: PromptResult, view: View) => string): Command {
  return async function* (prompts, options, { color, layers }) {
    const c = palette(color);
    for await (const result of analyzePrompts(prompts, options)) {
      const finalLayer = result.records[0].layers.at(-1)!.layer;
      yield { result, text: render(result, { c, color, layers: keptLayers(layers, finalLayer), targetOrigin: result.targetOrigin }) };
    }
  };
}

/** A per-prompt renderer from a per-record one: each position's view, separated by a blank line. */
export function perRecord(render: (record: LensRecord, view: View) => string): (result: PromptResult, view: View) => string {
  return (result, view) => result.records.map((record) => render(record, view)).join('\n\n');
}
