// lens as a library: open a model once, run prompts through the same code the CLI runs (so the
// records equal `--json`), and get errors as values with stable codes. Never prints, never exits.
import { UserError } from './errors.js';
import type { Analyzer, TargetSpec } from './commands/analyze.js';
import { checkTargetCount, COMMAND_RUNS, type CommandName } from './commands/runs.js';
import type { LensRecord } from './lens/record.js';
import type { AttributionRecord } from './lens/attribution.js';
import type { EvalResult } from './commands/eval.js';
import { IndexSpecError, parseIndexSpec, selectLayers, thinLayers, type IndexSpec } from './lens/spec.js';
import type { Inspection } from './model/inspect.js';
import { DTYPE_SUFFIX, offlineFromEnv, type Dtype } from './model/paths.js';

export type { LensRecord, LayerRecord, TargetEntry, TopEntry, PieceEntry, TokenInfo, Site } from './lens/record.js';
export type { Inspection } from './model/inspect.js';
export type { AttributionRecord } from './lens/attribution.js';
export type { EvalResult } from './commands/eval.js';
export type { EvalLayer } from './lens/eval.js';
export type { Dtype } from './model/paths.js';
export type { CommandName } from './commands/runs.js';
export { entropyByLayer, klToFinalByLayer, commitmentLayer, logitDiffByLayer, nextTokenCrossEntropyByLayer, type LayerValue, type TargetRef } from './lens/trajectory.js';

/**
 * Stable error codes: E_USAGE a bad argument or input (the CLI's exit 2), E_MODEL a model that cannot
 * be found, read or loaded, E_NETWORK a download that failed, E_ABORTED a call cancelled by its
 * signal, E_CLOSED a call after close(), E_INTERNAL a bug.
 */
export type LensErrorCode = 'E_USAGE' | 'E_MODEL' | 'E_NETWORK' | 'E_ABORTED' | 'E_CLOSED' | 'E_INTERNAL';

/** An error of the library: `message` is what the CLI prints after "lens: " (hint included), `code` what kind it is. */
export class LensError extends Error {
  constructor(readonly code: LensErrorCode, message: string, readonly hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LensError';
  }
}

// The hub's download failures say so in their first words (see model/hub.ts).
const NETWORK_MESSAGE = /^(cannot reach the hub|download of )/;

/** Any error as a LensError: the CLI's one-line message for a UserError, E_INTERNAL otherwise. */
export function toLensError(error: unknown): LensError {
  if (error instanceof LensError) return error;
  if (error instanceof UserError) {
    const code = error.exitCode === 2 ? 'E_USAGE' : NETWORK_MESSAGE.test(error.message) ? 'E_NETWORK' : 'E_MODEL';
    return new LensError(code, `${error.message}${error.hint ? ` (${error.hint})` : ''}`, error.hint, { cause: error });
  }
  const message = String((error as Error)?.message ?? error).split('\n')[0];
  return new LensError('E_INTERNAL', `internal error: ${message}`, undefined, { cause: error });
}

/** What openLens reports while it works: a download's bytes so far (total when known), or the one-time preparation of the model. */
export type LensProgress = { phase: 'download'; file: string; done: number; total?: number } | { phase: 'prepare' };

export interface OpenOptions {
  /** Hub repo id or local model directory (default Xenova/gpt2). */
  model?: string;
  /** Which ONNX file to read (default fp32). */
  dtype?: Dtype;
  /** Hub revision of a repo id (default main). */
  revision?: string;
  /** Never touch the network (default: $HF_HUB_OFFLINE). */
  offline?: boolean;
  /** lens's cache directory (default: $LENS_CACHE, else ~/.cache/lens). */
  cacheDir?: string;
  /** Cancels the opening (E_ABORTED), a download under way included (the model's or the tuned lens's; its files so far are kept to resume). */
  signal?: AbortSignal;
  onProgress?: (progress: LensProgress) => void;
  /** Many runs will follow: spend load time on packed weights for faster runs (the CLI's --file). */
  batch?: boolean;
  /** The environment lens reads (HF_ENDPOINT, HF_HOME, …); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The lens runs read through by default (default 'logit'); 'tuned' needs `tunedLens` (the CLI's --lens tuned). */
  lens?: 'logit' | 'tuned';
  /** The tuned lens: a directory (config.json and params.pt or params.safetensors), or a lens name in tuned-lens's Space. */
  tunedLens?: string;
}

/** A target: its text (all its tokens), a token id, or either as an object. */
export type TargetInput = string | number | { text: string } | { id: number };

export interface RunOptions {
  /** Use a command's defaults (positions, targets the lens surfaces, target count), as `lens <command> --json` does. */
  command?: CommandName;
  /** Positions to read: an index (negative from the end), a list, or a --position spec such as "0,3,-1", "2:5", ":" (default: the command's, else -1). */
  positions?: number | number[] | string;
  targets?: TargetInput[];
  /** Top tokens per layer (default 5). */
  k?: number;
  /** Also read the residual between each block's attention and MLP. */
  sublayers?: boolean;
  /** Keep only these layers in the records (a --layers spec such as "::2", or a list); the final layer is always kept. Default: all, as --json. */
  layers?: number[] | string;
  /** The notebook's lens (hidden states without the final norm) instead of the standard one. */
  raw?: boolean;
  /** Without targets, follow the lens's own top-1 tokens or the final layer's top 2 (default: the command's). */
  lensTargets?: 'top1' | 'top2';
  /** Read through this lens instead of the one opened with: 'logit' on a lens opened with a tuned lens; 'tuned' needs one (E_USAGE otherwise). */
  lens?: 'logit' | 'tuned';
  /** Cancels the call, queued or running (E_ABORTED). */
  signal?: AbortSignal;
}

export interface AttributeOptions {
  /** Positions to read, as in run (default -1, the last). */
  positions?: number | number[] | string;
  /** One target (its first token's logit) or two (the first's logit minus the second's); none: each position's final top-1. */
  targets?: TargetInput[];
  /** Also one part per attention head (and each output projection's bias). */
  heads?: boolean;
  /** Cancels the call, queued or running (E_ABORTED). */
  signal?: AbortSignal;
}

export interface EvaluateOptions {
  /** Read at most this many tokens of the text (the CLI's --max-tokens). */
  maxTokens?: number;
  /** Tokens done of the total, after each forward. */
  onProgress?: (done: number, total: number) => void;
  /** Cancels the call, queued or running (E_ABORTED). */
  signal?: AbortSignal;
}

/** A model opened for the lens. Calls run one at a time, in the order they were made. */
export interface Lens {
  /** The model as named when opened. */
  readonly model: string;
  /** Its number of blocks L: records have layers 0 … L. */
  readonly layers: number;
  /** The longest prompt it reads, in tokens. */
  readonly contextLength: number;
  readonly vocabSize: number;
  /** One record per prompt and position, prompts in order (the records `--json` prints). Rejects with LensError. */
  run(prompts: string | string[], options?: RunOptions): Promise<LensRecord[]>;
  /** Whether a tuned lens was loaded at open (runs may then pick `lens: 'logit'` or `'tuned'`). */
  readonly tuned: boolean;
  /** Direct logit attribution: one record per prompt and position, the records `lens attribute --json` prints. Rejects with LensError. */
  attribute(prompts: string | string[], options?: AttributeOptions): Promise<AttributionRecord[]>;
  /**
   * The logit lens over a text (and the tuned lens, when one was opened): per layer the mean KL to the
   * final layer, cross-entropy and entropy in nats, what `lens eval --json` prints for the same text
   * in a file (equal to the last bit when opened with `batch: true`, as eval loads). Rejects with LensError.
   */
  evaluate(text: string, options?: EvaluateOptions): Promise<EvalResult>;
  /** What `lens inspect --json` shows for the model; `signal` cancels it while queued (E_ABORTED). Rejects with LensError. */
  info(options?: { signal?: AbortSignal }): Promise<Inspection>;
  /** Waits for the calls under way, then frees the model; later calls reject with E_CLOSED. */
  close(): Promise<void>;
}

function aborted(signal: AbortSignal | undefined): LensError | undefined {
  return signal?.aborted ? new LensError('E_ABORTED', 'cancelled', undefined, { cause: signal.reason }) : undefined;
}

function usage(message: string): LensError {
  return new LensError('E_USAGE', message);
}

function promptList(prompts: string | string[]): string[] {
  const list = typeof prompts === 'string' ? [prompts] : prompts;
  if (!Array.isArray(list) || !list.every((p) => typeof p === 'string')) throw usage('give a prompt or an array of prompts (strings)');
  return list;
}

function indexSpec(value: number | number[] | string, what: string, step: boolean): IndexSpec {
  const text = typeof value === 'string' ? value : Array.isArray(value) ? value.join(',') : String(value);
  if (Array.isArray(value) ? value.length === 0 || !value.every(Number.isSafeInteger) : typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw usage(`${what}: give whole numbers`);
  }
  try {
    return parseIndexSpec(text, { step });
  } catch (error) {
    throw usage(`--${what === 'positions' ? 'position' : what} ${(error as Error).message}`);
  }
}

function targetSpec(target: TargetInput): TargetSpec {
  if (typeof target === 'string') return { text: target };
  if (typeof target === 'number') return { id: target };
  if (target && typeof target === 'object' && typeof (target as { text?: unknown }).text === 'string') return { text: (target as { text: string }).text };
  if (target && typeof target === 'object' && typeof (target as { id?: unknown }).id === 'number') return { id: (target as { id: number }).id };
  throw usage(`not a target: ${JSON.stringify(target)} (give a text, a token id, {text} or {id})`);
}

/** The layers `spec` keeps of 0..finalLayer. Throws LensError E_USAGE. */
function keptLayers(spec: number[] | string, finalLayer: number): number[] {
  const parsed = indexSpec(spec, 'layers', true);
  try {
    return selectLayers(parsed, finalLayer);
  } catch (error) {
    if (!(error instanceof IndexSpecError)) throw error;
    throw usage(error.index === undefined ? `--layers ${parsed.text} selects no layer of 0..${finalLayer}` : `--layers ${error.index} is outside the layers 0..${finalLayer}`);
  }
}

/** Opens a model for the lens (downloading and preparing it as needed). Rejects with LensError. */
export async function openLens(options: OpenOptions = {}): Promise<Lens> {
  const model = options.model ?? 'Xenova/gpt2';
  const dtype = options.dtype ?? 'fp32';
  if (!(dtype in DTYPE_SUFFIX)) throw usage(`--dtype ${JSON.stringify(dtype)}: one of ${Object.keys(DTYPE_SUFFIX).join(', ')}`);
  const env = { ...(options.env ?? process.env), ...(options.cacheDir !== undefined ? { LENS_CACHE: options.cacheDir } : {}) };
  const offline = options.offline ?? offlineFromEnv(env);
  const load = { model, dtype, revision: options.revision ?? 'main', offline, env };
  const onProgress = options.onProgress;
  const cancelled = aborted(options.signal);
  if (cancelled) throw cancelled;
  let analyzer: Analyzer;
  try {
    const { openAnalyzer } = await import('./commands/analyze.js');
    analyzer = await openAnalyzer({
      ...load, batch: options.batch, warn: () => {}, lens: options.lens, tunedLens: options.tunedLens, signal: options.signal,
      progress: onProgress && ((done, total, file) => onProgress({ phase: 'download', file, done, total })),
      onPrepare: onProgress && (() => onProgress({ phase: 'prepare' })),
    });
  } catch (error) {
    // A download cancelled by the signal fails as an interrupted download: it is reported as the cancellation.
    throw aborted(options.signal) ?? toLensError(error);
  }
  const late = aborted(options.signal);
  if (late) { await analyzer.dispose(); throw late; }

  // The calls' chain: each starts when the one before has finished its work (not merely been cancelled).
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  const enqueue = <T>(signal: AbortSignal | undefined, work: (checkpoint: () => void) => Promise<T>): Promise<T> => {
    if (closed) return Promise.reject(new LensError('E_CLOSED', 'this lens is closed'));
    const checkpoint = () => { const error = aborted(signal); if (error) throw error; };
    const job = tail.then(() => { checkpoint(); return work(checkpoint); });
    tail = job.catch(() => {});
    const result = job.catch((error) => { throw toLensError(error); });
    if (!signal) return result;
    // A running forward cannot be interrupted: the caller is released now, the queue waits for it.
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(aborted(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      result.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  };

  return {
    model, tuned: analyzer.tuned, layers: analyzer.model.layers, contextLength: analyzer.model.contextLength, vocabSize: analyzer.model.vocabSize,
    run(prompts, runOptions = {}) {
      try {
        const name = runOptions.command;
        if (name !== undefined && !Object.hasOwn(COMMAND_RUNS, name)) throw usage(`not a command: ${JSON.stringify(name)} (one of ${Object.keys(COMMAND_RUNS).join(', ')})`);
        const command = name === undefined ? undefined : COMMAND_RUNS[name];
        if (runOptions.targets !== undefined && !Array.isArray(runOptions.targets)) throw usage('targets: give an array of texts or token ids');
        if (runOptions.lensTargets !== undefined && runOptions.lensTargets !== 'top1' && runOptions.lensTargets !== 'top2') throw usage('lensTargets: "top1" or "top2"');
        if (runOptions.lens !== undefined && runOptions.lens !== 'logit' && runOptions.lens !== 'tuned') throw usage('lens: "logit" or "tuned"');
        const list = promptList(prompts);
        const k = runOptions.k ?? 5;
        if (!Number.isSafeInteger(k) || k < 1) throw usage('-k must be at least 1.');
        const targets = (runOptions.targets ?? []).map(targetSpec);
        checkTargetCount(targets.length, command?.targetCount);
        const request = {
          raw: runOptions.raw === true, k, targets, sublayers: runOptions.sublayers === true,
          positions: indexSpec(runOptions.positions ?? command?.position ?? '-1', 'positions', false),
          lensTargets: runOptions.lensTargets ?? command?.lensTargets,
        };
        const layers = runOptions.layers;
        return enqueue(runOptions.signal, async (checkpoint) => {
          const analyzeOne = analyzer.plan(request, checkpoint, runOptions.lens);
          const records: LensRecord[] = [];
          for (const prompt of list) records.push(...(await analyzeOne(prompt)).records);
          if (layers === undefined || records.length === 0) return records;
          const kept = keptLayers(layers, records[0].layers.at(-1)!.layer);
          return records.map((record) => ({ ...record, layers: thinLayers(record.layers, kept) }));
        });
      } catch (error) {
        return Promise.reject(toLensError(error));
      }
    },
    attribute(prompts, attributeOptions = {}) {
      try {
        const list = promptList(prompts);
        if (attributeOptions.targets !== undefined && !Array.isArray(attributeOptions.targets)) throw usage('targets: give an array of texts or token ids');
        const request = {
          positions: indexSpec(attributeOptions.positions ?? '-1', 'positions', false),
          targets: (attributeOptions.targets ?? []).map(targetSpec), heads: attributeOptions.heads === true,
        };
        return enqueue(attributeOptions.signal, async (checkpoint) => {
          const attributeOne = (await import('./commands/attribute.js')).planAttribution(analyzer.model, request, checkpoint);
          const records: AttributionRecord[] = [];
          for (const prompt of list) records.push(...(await attributeOne(prompt)).records);
          return records;
        });
      } catch (error) {
        return Promise.reject(toLensError(error));
      }
    },
    evaluate(text, evaluateOptions = {}) {
      try {
        if (typeof text !== 'string') throw usage('give the text to evaluate as a string');
        const { maxTokens, onProgress } = evaluateOptions;
        if (maxTokens !== undefined && (!Number.isSafeInteger(maxTokens) || maxTokens < 2)) throw usage('--max-tokens must be at least 2.');
        return enqueue(evaluateOptions.signal, async (checkpoint) => (await import('./commands/eval.js')).evaluateText(
          analyzer.model, analyzer.tunedLens, text, { maxTokens, onProgress, checkpoint, textName: 'the text', tooShort: usage },
        ));
      } catch (error) {
        return Promise.reject(toLensError(error));
      }
    },
    info(infoOptions = {}) {
      return enqueue(infoOptions.signal, async () => (await import('./model/inspect.js')).inspectResolved(analyzer.model.source));
    },
    async close() {
      if (closed) return;
      closed = true;
      await tail;
      await analyzer.dispose();
    },
  };
}
