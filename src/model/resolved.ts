// A model as lens found it, made once when it is opened (hub.ts resolveModel): its directory, the
// files it reads for the dtype, the cache root and its cache entry. Preparation, the runtime,
// inspect and the tuned-lens lookup read this value instead of deriving each part again.
import { dataFiles } from './files.js';
import { onnxFileFor, type Dtype } from './paths.js';
import { entryDirFor } from './prepare.js';

export interface ResolvedModel {
  /** What the user named (a repo id or the directory). */
  readonly id: string;
  /** The model's directory in the hub layout. */
  readonly dir: string;
  readonly dtype: Dtype;
  /** The hub revision of a repo id ('main' for a directory). */
  readonly revision: string;
  /** Downloaded (ours or the Hugging Face cache): its files never change in place, so its entry is keyed by content alone. */
  readonly downloaded: boolean;
  /** The environment it was resolved under (hub address, token, download and copy settings). */
  readonly env: NodeJS.ProcessEnv;
  /** lens's cache directory ($LENS_CACHE, else ~/.cache/lens). */
  readonly cacheRoot: string;
  /** The dtype's ONNX file, relative to `dir`. */
  readonly onnx: string;
  /** config.json as read when resolving (a JSON object). */
  readonly config: Record<string, unknown>;
  /** The ONNX file's data files relative to `dir`, [chunks declared, then others the graph names], found on first use. Throws UserError. */
  readonly dataFiles: readonly string[];
  /** The rewritten model's cache entry (whether or not it is built yet), keyed by the source's content on first use. */
  readonly entryDir: string;
}

/** What resolving already found, so that the value does not find it again. */
export interface KnownFiles { config: Record<string, unknown>; dataFiles?: string[] }

class Resolved implements ResolvedModel {
  #config: Record<string, unknown>;
  #dataFiles?: readonly string[];
  #entryDir?: string;

  constructor(
    readonly id: string, readonly dir: string, readonly dtype: Dtype, readonly revision: string,
    readonly downloaded: boolean, readonly env: NodeJS.ProcessEnv, readonly cacheRoot: string, known: KnownFiles,
  ) {
    this.#config = known.config;
    this.#dataFiles = known.dataFiles;
  }

  get onnx(): string { return onnxFileFor(this.dtype); }
  get config(): Record<string, unknown> { return this.#config; }
  get dataFiles(): readonly string[] { return (this.#dataFiles ??= dataFiles(this.dir, this.config, this.dtype)); }
  get entryDir(): string { return (this.#entryDir ??= entryDirFor(this)); }
}

/** The one value of a resolved model (made by resolveModel; `known` seeds what resolving has read). */
export function resolvedModel(fields: Pick<ResolvedModel, 'id' | 'dir' | 'dtype' | 'revision' | 'downloaded' | 'env' | 'cacheRoot'>, known: KnownFiles): ResolvedModel {
  return new Resolved(fields.id, fields.dir, fields.dtype, fields.revision, fields.downloaded, fields.env, fields.cacheRoot, known);
}
