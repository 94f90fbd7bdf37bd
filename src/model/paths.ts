// Where lens keeps files: one cache directory for downloads and rewritten models.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The cache root: $LENS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/lens. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LENS_CACHE) return resolve(env.LENS_CACHE);
  return join(env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'lens');
}

/** The hub address: $HF_ENDPOINT, else the public hub. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
}

/** Whether the network is off limits ($HF_HUB_OFFLINE set to a true value). */
export function offlineFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? '').toLowerCase());
}

/** The dtypes transformers.js publishes, with the file-name suffix each one uses. */
export const DTYPE_SUFFIX = {
  fp32: '', fp16: '_fp16', q8: '_quantized', int8: '_int8', uint8: '_uint8', q4: '_q4', q4f16: '_q4f16', bnb4: '_bnb4',
} as const;
export type Dtype = keyof typeof DTYPE_SUFFIX;

/** The ONNX file of a model directory for a dtype, relative to it. */
export function onnxFileFor(dtype: Dtype): string {
  return `onnx/model${DTYPE_SUFFIX[dtype]}.onnx`;
}
