// A tuned lens as tuned-lens saves it: config.json (TunedLensConfig) and the state dict of its
// ModuleList of nn.Linear(d, d), one per layer 0..L−1 (the final layer needs none).
import { UserError } from '../errors.js';
import type { Tensor } from './torch-file.js';

/** The fields of tuned-lens's config.json that lens uses. */
export interface TunedLensConfig { baseModel: string; width: number; layers: number; bias: boolean }

/** Translators ready for the lens graph: `count` = L, W [L, d, d] (out × in) and b [L, 1, d], flattened. */
export interface Translators { count: number; width: number; weight: Float32Array; bias: Float32Array }

/**
 * TunedLensConfig from config.json's parsed value; `unembed_hash` and other fields are ignored.
 * Throws a UserError naming a missing or invalid field, or a lens type other than linear_tuned_lens
 * (the caller prefixes the file's path).
 */
export function parseTunedLensConfig(value: unknown): TunedLensConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UserError('not a JSON object');
  const config = value as Record<string, unknown>;
  const count = (field: string) => {
    const n = config[field];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw new UserError(`no valid ${field} (a positive integer)`);
    return n;
  };
  const lensType = config.lens_type ?? 'linear_tuned_lens';
  if (lensType !== 'linear_tuned_lens') throw new UserError(`lens_type is ${JSON.stringify(lensType)}; lens reads linear_tuned_lens`);
  const bias = config.bias ?? true;
  if (typeof bias !== 'boolean') throw new UserError('bias is not true or false');
  const baseModel = typeof config.base_model_name_or_path === 'string' ? config.base_model_name_or_path : '';
  return { baseModel, width: count('d_model'), layers: count('num_hidden_layers'), bias };
}

/**
 * The translators of layers 0..L−1 from a state dict with keys `i.weight` [d, d] (out × in) and,
 * with bias, `i.bias` [d]. Throws a UserError on a missing or unexpected key or a wrong shape.
 */
export function translatorsFrom(state: Map<string, Tensor>, config: TunedLensConfig): Translators {
  const { layers, width: d } = config;
  const weight = new Float32Array(layers * d * d);
  const bias = new Float32Array(layers * d);
  const expected = new Set<string>();
  const take = (name: string, shape: number[]): Float32Array => {
    expected.add(name);
    const tensor = state.get(name);
    if (!tensor) throw new UserError(`the lens's parameters have no ${name} (config.json says ${layers} layers${config.bias ? ' with bias' : ''})`);
    if (tensor.shape.join() !== shape.join()) throw new UserError(`${name} has shape [${tensor.shape.join(', ')}]; a lens of d_model ${d} needs [${shape.join(', ')}]`);
    return tensor.data;
  };
  for (let layer = 0; layer < layers; layer++) {
    weight.set(take(`${layer}.weight`, [d, d]), layer * d * d);
    if (config.bias) bias.set(take(`${layer}.bias`, [d]), layer * d);
  }
  const unexpected = [...state.keys()].filter((name) => !expected.has(name));
  if (unexpected.length > 0) throw new UserError(`the lens's parameters have unexpected keys (${unexpected.slice(0, 3).join(', ')}${unexpected.length > 3 ? ', …' : ''}) for ${layers} layers${config.bias ? '' : ' without bias'}`);
  return { count: layers, width: d, weight, bias };
}
