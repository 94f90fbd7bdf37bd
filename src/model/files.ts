// Which files of a model repository lens reads, resolved as transformers.js resolves them:
// the ONNX file of the dtype, the external-data chunks config.json declares for it, and any
// further data file the graph itself names. Also the config an entry of ours must carry.
import { existsSync } from 'node:fs';
import { join, posix } from 'node:path';
import { UserError } from '../errors.js';
import { safeLocation } from '../onnx/external-data.js';
import { externalDataLocations } from '../onnx/locations.js';
import { onnxFileFor, type Dtype } from './paths.js';

/** The files every model needs besides its ONNX file. */
export const BASE_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const;
/** transformers.js refuses more chunks than this. */
const MAX_CHUNKS = 100;
const TJS = 'transformers.js_config';

type Json = Record<string, unknown>;

/** The transformers.js_config block as transformers.js applies it on the CPU (device_config.cpu merged in). */
function transformersJsConfig(config: Json): Json {
  const block = (config[TJS] ?? {}) as Json;
  const cpu = ((block.device_config ?? {}) as Json).cpu as Json | undefined;
  return cpu ? { ...block, ...cpu } : block;
}

/**
 * The number of external-data chunks `use_external_data_format` declares for an ONNX file:
 * `true` → 1, a number → that many, a map → its entry for the full file name or, failing that,
 * the base name (`model`). Throws UserError for a value transformers.js would refuse.
 */
export function declaredChunks(config: Json, dtype: Dtype): number {
  const declared = transformersJsConfig(config).use_external_data_format;
  const fullName = posix.basename(onnxFileFor(dtype));
  let value: unknown = declared;
  if (declared !== null && typeof declared === 'object') {
    const map = declared as Json;
    value = Object.hasOwn(map, fullName) ? map[fullName] : Object.hasOwn(map, 'model') ? map.model : 0;
  }
  const chunks = Number(value ?? 0);
  if (!Number.isInteger(chunks) || chunks < 0 || chunks > MAX_CHUNKS) {
    throw new UserError(`config.json declares ${JSON.stringify(value)} external-data chunks for ${fullName}`, `use_external_data_format must be true, false or a whole number up to ${MAX_CHUNKS}`);
  }
  return chunks;
}

/** The chunk files config.json declares for the dtype's ONNX file, relative to the model: onnx/model.onnx_data, onnx/model.onnx_data_1, …. Throws UserError. */
export function declaredDataFiles(config: Json, dtype: Dtype): string[] {
  const onnx = onnxFileFor(dtype);
  return Array.from({ length: declaredChunks(config, dtype) }, (_, i) => `${onnx}_data${i === 0 ? '' : `_${i}`}`);
}

/**
 * The external-data files the ONNX file at `onnxRel` names, relative to the model directory.
 * Throws UserError for an unreadable ONNX file or a location outside the model's folder.
 */
export function graphDataFiles(modelDir: string, onnxRel: string): string[] {
  let locations: string[];
  try {
    locations = externalDataLocations(join(modelDir, onnxRel));
  } catch (error) {
    throw new UserError(`${join(modelDir, onnxRel)} is not a readable ONNX model (${(error as Error).message})`);
  }
  const folder = posix.dirname(onnxRel);
  return locations.map((location) => {
    try {
      return posix.join(folder, safeLocation(location).split('\\').join('/'));
    } catch (error) {
      throw new UserError(`cannot read the weights of ${join(modelDir, onnxRel)}: ${(error as Error).message}`);
    }
  });
}

/** Every data file the dtype's ONNX file needs: the declared chunks, then any others the graph names. Throws UserError. */
export function dataFiles(modelDir: string, config: Json, dtype: Dtype): string[] {
  return [...new Set([...declaredDataFiles(config, dtype), ...graphDataFiles(modelDir, onnxFileFor(dtype))])];
}

/** The first of `files` missing from `modelDir`, if any. */
export function firstMissing(modelDir: string, files: readonly string[]): string | undefined {
  return files.find((file) => !existsSync(join(modelDir, file)));
}

/**
 * The config.json of a rewritten entry: the source's, with every key transformers.js reads kept,
 * except the external-data declaration, which described the source's files, not the entry's
 * (whose graph names its own data files, found by onnxruntime next to it).
 */
export function entryConfig(config: Json): Json {
  const block = config[TJS] as Json | undefined;
  if (!block || typeof block !== 'object') return config;
  const { use_external_data_format: _dropped, ...rest } = block;
  if (rest.device_config && typeof rest.device_config === 'object') {
    rest.device_config = Object.fromEntries(Object.entries(rest.device_config as Json).map(([device, settings]) => {
      if (!settings || typeof settings !== 'object') return [device, settings];
      const { use_external_data_format: _alsoDropped, ...kept } = settings as Json;
      return [device, kept];
    }));
  }
  return { ...config, [TJS]: rest };
}
