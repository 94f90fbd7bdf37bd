// `lens eval`: the logit lens and (when given) the tuned lens over a text, in windows of the
// model's context; per layer the mean KL to the final layer, cross-entropy and entropy.
import { readFileSync } from 'node:fs';
import { UserError, usageError } from '../errors.js';
import { bitsPerByteFactor, LensEvalSums, type EvalLayer } from '../lens/eval.js';
import type { Dtype } from '../model/paths.js';
import type { LensModel } from '../model/runtime.js';
import type { TunedLens } from '../tuned/lens-dir.js';

export interface EvalOptions {
  model: string; dtype: Dtype; revision?: string; offline: boolean; env: NodeJS.ProcessEnv;
  /** The text file to read. */
  data: string;
  /** Read at most this many tokens of the text. */
  maxTokens?: number;
  /** A tuned lens (directory or Space name) to compare with the logit lens. */
  tunedLens?: string;
  /** Tokens done of the total, after each forward pass. */
  onProgress?: (done: number, total: number) => void;
  progress?: (done: number, total: number | undefined, file: string) => void;
}

/** What `lens eval` reports: per layer means in nats [L+1], and the tokens and bytes they cover. */
export interface EvalResult { model: string; tokens: number; bytes: number; bitsPerByte: number; logit: EvalLayer[]; tuned?: EvalLayer[] }

/** 64 Mi lens logits per forward at most, as the analysis commands. */
const LOGITS_BUDGET = 1 << 26;

/** Runs the evaluation. Throws UserError on an unreadable or too short text, or a lens that does not fit. */
export async function evaluate(options: EvalOptions): Promise<EvalResult> {
  let text: string;
  try {
    text = new TextDecoder('utf-8').decode(readFileSync(options.data));
  } catch (error) {
    throw usageError(`cannot read --data ${options.data}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const tuned = options.tunedLens === undefined ? undefined : await (await import('../model/tuned-hub.js')).loadTunedLens(options.tunedLens, options);
  const { loadLensModel } = await import('../model/runtime.js');
  const model = await loadLensModel(options.model, { ...options, batch: true });
  try {
    if (tuned) (await import('../tuned/lens-dir.js')).checkLensFits(tuned, model);
    return await evaluateText(model, tuned, text, { ...options, textName: `--data ${options.data}` });
  } finally {
    await model.dispose();
  }
}

/** How evaluateText reads its text: at most `maxTokens`, named `textName` in errors, with progress and a checkpoint before each forward. */
export interface EvalRequest {
  maxTokens?: number;
  textName: string;
  /** The error for a text of fewer than 2 tokens (default a UserError, exit 1: the CLI's --data file; the library's text argument is a usage error). */
  tooShort?: (message: string) => Error;
  onProgress?: (done: number, total: number) => void;
  checkpoint?: () => void;
}

/**
 * The evaluation of `text` on a loaded model, through the logit lens and `tuned` (when given, fitted
 * to the model): the one path of `lens eval` and the library's evaluate(). Throws UserError (or
 * request.tooShort's error) for a text of fewer than 2 tokens.
 */
export async function evaluateText(model: LensModel, tuned: TunedLens | undefined, text: string, request: EvalRequest): Promise<EvalResult> {
  const checkpoint = request.checkpoint ?? (() => {});
  let ids = model.encodePrompt(text);
  if (request.maxTokens !== undefined) ids = ids.slice(0, request.maxTokens);
  if (ids.length < 2) {
    const message = `${request.textName} has ${ids.length} token${ids.length === 1 ? '' : 's'}; eval needs at least 2`;
    throw request.tooShort ? request.tooShort(message) : new UserError(message);
  }
  const sites = model.layers + 1, V = model.vocabSize;
  const sums = { logit: new LensEvalSums(sites), tuned: tuned ? new LensEvalSums(sites) : undefined };
  const chunk = Math.max(1, Math.floor(LOGITS_BUDGET / (sites * V)));
  let bytes = 0, done = 0;
  const windowStarts = Array.from({ length: Math.ceil(ids.length / model.contextLength) }, (_, w) => w * model.contextLength);
  const total = windowStarts.reduce((sum, start) => sum + Math.max(0, Math.min(model.contextLength, ids.length - start) - 1), 0);
  // Windows of the model's context, each read from its start; a window's last token is only predicted.
  for (const start of windowStarts) {
    const window = ids.slice(start, start + model.contextLength);
    const positions = window.slice(0, -1).map((_, i) => i);
    for (let from = 0; from < positions.length; from += chunk) {
      const part = positions.slice(from, from + chunk);
      checkpoint();
      const runs = [{ sums: sums.logit, run: await model.run(window, part, 'norm') }];
      if (tuned && sums.tuned) runs.push({ sums: sums.tuned, run: await model.run(window, part, 'tuned', { translators: tuned.translators }) });
      for (const { sums: into, run } of runs) {
        part.forEach((position, p) => {
          const rows = Array.from({ length: sites }, (_, s) => run.logits.subarray((s * part.length + p) * V, (s * part.length + p + 1) * V));
          into.add(rows, window[position + 1]);
        });
      }
      for (const position of part) bytes += Buffer.byteLength(model.tokenText(window[position + 1]), 'utf8');
      done += part.length;
      request.onProgress?.(done, total);
    }
  }
  const tokens = sums.logit.count;
  return { model: model.id, tokens, bytes, bitsPerByte: bitsPerByteFactor(tokens, bytes), logit: sums.logit.means(), tuned: sums.tuned?.means() };
}

/** The evaluation as a table: one row per layer, each measure in nats and bits per byte, logit lens then tuned lens. */
export function renderEval(result: EvalResult): string {
  const f = (nats: number) => `${nats.toFixed(3)} (${(nats * result.bitsPerByte).toFixed(3)})`;
  const lenses = [['logit', result.logit], ...(result.tuned ? [['tuned', result.tuned]] as const : [])] as [string, EvalLayer[]][];
  const header = ['layer', ...['KL(final‖layer)', 'cross-entropy', 'entropy'].flatMap((m) => lenses.map(([name]) => `${m} ${name}`))];
  const rows = result.logit.map((_, l) => [`L${String(l).padStart(2, '0')}`, ...(['kl', 'crossEntropy', 'entropy'] as const).flatMap((m) => lenses.map(([, layers]) => f(layers[l][m])))]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  return [
    `lens eval · ${result.model} · ${result.tokens} tokens predicted, ${result.bytes} bytes · nats per token (bits per byte)`,
    line(header), ...rows.map(line),
  ].join('\n');
}
