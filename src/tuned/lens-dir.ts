// A tuned lens on disk: a directory with tuned-lens's config.json and params.safetensors or params.pt.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { readSafetensors, readTorchStateDict, type Tensor } from './torch-file.js';
import { parseTunedLensConfig, translatorsFrom, type Translators, type TunedLensConfig } from './translators.js';
import type { ByteSource } from './zip.js';

/** A tuned lens read from `dir`: its config and translators. */
export interface TunedLens { dir: string; config: TunedLensConfig; translators: Translators }

/** Reads a file through an open descriptor, `length` bytes at a time, never all at once. */
function withFileSource<T>(path: string, use: (source: ByteSource) => T): T {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    return use({
      size,
      read(offset, length) {
        if (offset < 0 || offset + length > size) throw new UserError('not a complete file (truncated or damaged)');
        const bytes = new Uint8Array(length);
        for (let done = 0; done < length;) {
          const n = readSync(fd, bytes, done, Math.min(length - done, 1 << 30), offset + done);
          if (n === 0) throw new UserError('not a complete file (truncated while reading)');
          done += n;
        }
        return bytes;
      },
    });
  } finally {
    closeSync(fd);
  }
}

/**
 * The tuned lens in `dir` (config.json, then params.safetensors if present, else params.pt).
 * Throws a UserError naming the file and what is wrong with it.
 */
export function readTunedLensDir(dir: string): TunedLens {
  const configPath = join(dir, 'config.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`tuned lens directory not found: ${dir}`, 'give the directory holding config.json and params.pt, or a lens name from the tuned-lens Space');
  if (!existsSync(configPath)) throw new UserError(`--tuned-lens ${dir} has no config.json`, 'a tuned lens directory holds config.json and params.pt, as TunedLens.save writes them');
  let config: TunedLensConfig;
  try {
    config = parseTunedLensConfig(JSON.parse(readFileSync(configPath, 'utf8')));
  } catch (error) {
    throw new UserError(`${configPath}: ${error instanceof UserError ? error.message : 'not valid JSON'}`);
  }
  const safetensors = join(dir, 'params.safetensors'), pt = join(dir, 'params.pt');
  const paramsPath = existsSync(safetensors) ? safetensors : pt;
  if (!existsSync(paramsPath)) throw new UserError(`--tuned-lens ${dir} has no params.pt (nor params.safetensors)`);
  let state: Map<string, Tensor>;
  try {
    state = withFileSource(paramsPath, paramsPath === pt ? readTorchStateDict : readSafetensors);
  } catch (error) {
    if (error instanceof UserError) throw new UserError(`${paramsPath}: ${error.message}`);
    throw new UserError(`cannot read ${paramsPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return { dir, config, translators: translatorsFrom(state, config) };
  } catch (error) {
    throw error instanceof UserError ? new UserError(`${paramsPath}: ${error.message}`) : error;
  }
}

/**
 * Checks that a tuned lens fits a model of `layers` blocks and width `width`. Throws a UserError
 * naming the mismatch.
 */
export function checkLensFits(lens: TunedLens, model: { id: string; layers: number; width?: number }): void {
  const { config } = lens;
  if (config.layers !== model.layers) throw new UserError(`the tuned lens in ${lens.dir} is for ${config.layers} layers (num_hidden_layers); ${model.id} has ${model.layers}`, 'use the lens made for this model');
  if (model.width === undefined) throw new UserError(`cannot check the tuned lens against ${model.id}: its config.json names no hidden size`);
  if (config.width !== model.width) throw new UserError(`the tuned lens in ${lens.dir} is for d_model ${config.width}; ${model.id} has ${model.width}`, 'use the lens made for this model');
}
