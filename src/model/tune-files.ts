// The files of a `lens tune` run: the lens as tuned-lens saves it (config.json, params.pt) and a
// checkpoint (translators and momentum buffers in one torch file) named by tune-state.json.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { readTorchStateDict, writeTorchStateDict } from '../tuned/torch-file.js';
import type { Translators } from '../tuned/translators.js';
import type { TensorInput } from '../tuned/pickle.js';
import { writeAtomically } from './atomic.js';

/** Momentum buffers shaped as the translators: weight [L, d, d], bias [L, d]. */
export interface MomentumBuffers { weight: Float32Array; bias: Float32Array }

/** The state dict of translators [L] (keys `l.weight` [d, d], `l.bias` [d]), prefixed. */
function stateDict(values: { weight: Float32Array; bias: Float32Array }, L: number, d: number, prefix = ''): Map<string, TensorInput> {
  const tensors = new Map<string, TensorInput>();
  for (let l = 0; l < L; l++) {
    tensors.set(`${prefix}${l}.weight`, { shape: [d, d], data: values.weight.subarray(l * d * d, (l + 1) * d * d) });
    tensors.set(`${prefix}${l}.bias`, { shape: [d], data: values.bias.subarray(l * d, (l + 1) * d) });
  }
  return tensors;
}

const concat = (chunks: Uint8Array[]) => Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));

/** Writes DIR/params.pt and DIR/config.json as TunedLens.save does, each atomically. */
export function writeLensFiles(dir: string, baseModel: string, translators: Translators): void {
  const { count: L, width: d } = translators;
  writeAtomically(join(dir, 'params.pt'), concat(writeTorchStateDict(stateDict(translators, L, d))));
  writeAtomically(join(dir, 'config.json'), `${JSON.stringify({
    base_model_name_or_path: baseModel, d_model: d, num_hidden_layers: L, bias: true, base_model_revision: null, lens_type: 'linear_tuned_lens',
  }, null, 2)}\n`);
}

/**
 * Writes checkpoint-<step>.pt (the translators as `params.*`, the momentum as `momentum.*`), then
 * tune-state.json naming it, then removes the previous checkpoint: a kill at any point leaves a
 * consistent pair.
 */
export function writeCheckpoint(dir: string, state: { step: number; checkpoint: string }, translators: Translators, momentum: MomentumBuffers): void {
  const { count: L, width: d } = translators;
  const previous = state.checkpoint;
  const name = `checkpoint-${state.step}.pt`;
  const tensors = new Map([...stateDict(translators, L, d, 'params.'), ...stateDict(momentum, L, d, 'momentum.')]);
  writeAtomically(join(dir, name), concat(writeTorchStateDict(tensors)));
  state.checkpoint = name;
  writeAtomically(join(dir, 'tune-state.json'), `${JSON.stringify(state)}\n`);
  if (previous && previous !== name && existsSync(join(dir, previous))) rmSync(join(dir, previous));
}

/** Reads a checkpoint into `translators` and `momentum` (filled in place). Throws UserError on a missing or damaged file. */
export function readCheckpoint(path: string, translators: Translators, momentum: MomentumBuffers): void {
  const { count: L, width: d } = translators;
  let tensors;
  try {
    const bytes = readFileSync(path);
    tensors = readTorchStateDict({ size: bytes.length, read: (offset, length) => new Uint8Array(bytes.buffer, bytes.byteOffset + offset, length) });
  } catch (error) {
    throw new UserError(`cannot resume from ${path}: ${(error as Error).message}`);
  }
  for (const [prefix, into] of [['params.', translators], ['momentum.', momentum]] as const) {
    for (let l = 0; l < L; l++) {
      const w = tensors.get(`${prefix}${l}.weight`), b = tensors.get(`${prefix}${l}.bias`);
      if (!w || !b || w.data.length !== d * d || b.data.length !== d) throw new UserError(`cannot resume from ${path}: ${prefix}${l} is missing or has the wrong shape`);
      into.weight.set(w.data, l * d * d);
      into.bias.set(b.data, l * d);
    }
  }
}
