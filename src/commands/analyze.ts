// What every command shares: load the model once, check each prompt, run the lens and
// build the record. Commands differ only in their defaults and how they render.
import { usageError } from '../errors.js';
import { buildRecord, type LensRecord, type Target } from '../lens/record.js';
import type { Dtype } from '../model/paths.js';
import type { ChalkInstance } from 'chalk';
import { palette } from '../render/style.js';

/** A target as the user gave it: a text (its first token is used) or a token id. */
export type TargetSpec = { text: string } | { id: number };

export interface AnalyzeOptions {
  model: string;
  dtype: Dtype;
  /** Hub revision of a repo id (branch, tag or commit). */
  revision?: string;
  raw: boolean;
  /** Token position to read; negative counts from the end. */
  position: number;
  k: number;
  offline: boolean;
  targets: TargetSpec[];
  env: NodeJS.ProcessEnv;
  /** One-line warnings for stderr. */
  warn: (message: string) => void;
  /** Download progress, when it is shown. */
  progress?: (done: number, total: number | undefined, file: string) => void;
  onPrepare?: () => void;
  /** Prompts come in a batch (--file): favour per-prompt speed over load time. */
  batch?: boolean;
}

/** Runs the lens on each prompt in turn, yielding one record per prompt. Throws UserError on bad input. */
export async function* analyze(prompts: AsyncIterable<string> | Iterable<string>, options: AnalyzeOptions): AsyncGenerator<LensRecord> {
  // The runtime pulls in transformers.js and onnxruntime: load it only when a command runs.
  const { loadLensModel } = await import('../model/runtime.js');
  const model = await loadLensModel(options.model, options);
  try {
    const targets = options.targets.map((spec) => resolveTarget(spec, model, options.warn));
    const mode = options.raw ? 'raw' : 'norm';
    for await (const prompt of prompts) {
      if (prompt.length === 0) throw usageError('empty prompt', 'give a prompt with at least one character');
      const ids = model.encodePrompt(prompt);
      if (ids.length === 0) throw usageError(`prompt ${JSON.stringify(prompt)} encodes to no tokens`);
      if (ids.length > model.contextLength) {
        throw usageError(`prompt is ${ids.length} tokens; ${model.id} reads at most ${model.contextLength}`, 'shorten the prompt');
      }
      const position = options.position < 0 ? ids.length + options.position : options.position;
      if (position < 0 || position >= ids.length) {
        throw usageError(`--position ${options.position} is outside the prompt's ${ids.length} tokens`, `use 0..${ids.length - 1} or -${ids.length}..-1`);
      }
      const { logits } = await model.run(ids, [position], mode);
      const V = model.vocabSize;
      yield buildRecord({
        model: model.id, mode, prompt, position, k: options.k, targets,
        tokens: ids.map((id) => ({ id, text: model.tokenText(id) })),
        layerLogits: Array.from({ length: model.layers + 1 }, (_, l) => logits.subarray(l * V, (l + 1) * V)),
        tokenText: model.tokenText,
      });
    }
  } finally {
    await model.dispose();
  }
}

function resolveTarget(spec: TargetSpec, model: { encode(t: string): number[]; tokenText(id: number): string; vocabSize: number }, warn: (m: string) => void): Target {
  if ('id' in spec) {
    if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id >= model.vocabSize) {
      throw usageError(`token id ${spec.id} is outside the vocabulary (0..${model.vocabSize - 1})`);
    }
    return { id: spec.id, text: model.tokenText(spec.id) };
  }
  if (spec.text.length === 0) throw usageError('empty target', 'give a target text such as " football" or a token id');
  const ids = model.encode(spec.text);
  if (ids.length === 0) throw usageError(`target ${JSON.stringify(spec.text)} encodes to no tokens`);
  if (ids.length > 1) {
    const pieces = ids.map((id) => JSON.stringify(model.tokenText(id))).join(' ');
    warn(`target ${JSON.stringify(spec.text)} is ${ids.length} tokens (${pieces}); using the first, ${JSON.stringify(model.tokenText(ids[0]))} (id ${ids[0]})`);
  }
  return { id: ids[0], text: model.tokenText(ids[0]) };
}

export type CommandOutput = AsyncGenerator<{ record: LensRecord; text: string }>;
export type Command = (prompts: AsyncIterable<string> | Iterable<string>, options: AnalyzeOptions, color: boolean) => CommandOutput;

/** A command that runs the lens and renders each record with `render`. */
export function renderingCommand(render: (record: LensRecord, c: ChalkInstance, color: boolean) => string): Command {
  return async function* (prompts, options, color) {
    const c = palette(color);
    for await (const record of analyze(prompts, options)) yield { record, text: render(record, c, color) };
  };
}
