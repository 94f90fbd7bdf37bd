// What lens finds in a model, without running it: the architecture from config.json (through
// the family table) and the decoder structure from the ONNX graph it would rewrite.
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { describeDecoder, type GraphDescription } from '../onnx/describe.js';
import { ExternalDataReader } from '../onnx/external-data.js';
import { GraphStructureError } from '../onnx/lens-graph.js';
import { DataType } from '../onnx/proto.js';
import { readArchitecture } from './architecture.js';
import { resolveModel, type ResolvedModel, type ResolveOptions } from './hub.js';
import type { Dtype } from './paths.js';
import { entryReady, readModel, transposeCheck } from './prepare.js';

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16]);

export interface Inspection {
  model: string;
  directory: string;
  onnx: string;
  dtype: Dtype;
  modelType: string;
  /** The Hugging Face class of a family lens knows; undefined when it reads the model by structure only. */
  family?: string;
  layers: number;
  width?: number;
  heads?: number;
  kvHeads?: number;
  /** Null when the config gives no context length. */
  contextLength: number | null;
  vocabSize: number;
  finalNorm: Omit<GraphDescription['finalNorm'], 'kind'> & { kind: string };
  head: GraphDescription['head'] & { tied: boolean };
  afterHead: GraphDescription['afterHead'];
  residual: GraphDescription['residual'];
  embeddingScale?: string;
  /** Whether the model's head scores the last position only; what it applies to the embedding (the lens's layer 0 is after it). */
  prunedHead: boolean;
  atEmbedding: string[];
  /** A norm on the embeddings before block 1 (BLOOM's word_embeddings_layernorm). */
  embeddingNorm?: string;
  /** Float inputs beside the key/value cache (LFM2's past_conv.N), which a prompt starts with at zero. */
  stateInputs: string[];
  graph: { merged: boolean; fusedNorms: boolean; fusedAttention: string[]; rotaryCacheSwitch: boolean };
  cache: { entry: string; ready: boolean };
}

/** Inspects a model (downloading it if needed). Throws UserError for what lens cannot read. */
export async function inspectModel(spec: string, options: ResolveOptions): Promise<Inspection> {
  return inspectResolved(await resolveModel(spec, options));
}

/** Inspects a model resolved already (an open lens's). Throws UserError for what lens cannot read. */
export function inspectResolved(source: ResolvedModel): Inspection {
  const { dir, id, dtype } = source;
  const configPath = join(dir, 'config.json');
  const arch = readArchitecture(source.config, configPath);
  const onnx = join(dir, source.onnx);
  const model = readModel(onnx);
  const reader = new ExternalDataReader(join(dir, 'onnx'));
  let found: GraphDescription;
  try {
    found = describeDecoder(model, arch.layers, arch.vocabSize, transposeCheck(reader));
  } catch (error) {
    if (error instanceof GraphStructureError) throw new UserError(`${onnx} is not a decoder lens can read: ${error.message}`);
    throw error;
  } finally {
    reader.close();
  }
  return {
    model: id, directory: dir, onnx, dtype,
    modelType: arch.modelType, family: arch.family?.name,
    layers: arch.layers, width: arch.width, heads: arch.heads, kvHeads: arch.kvHeads,
    contextLength: Number.isFinite(arch.contextLength) ? arch.contextLength : null, vocabSize: arch.vocabSize,
    // The graph cannot tell Gemma's (1 + w) from a plain gain (torch folds it): the family table can.
    finalNorm: { ...found.finalNorm, kind: arch.family?.norm ?? found.finalNorm.kind },
    head: { ...found.head, tied: found.head.tiedTo !== undefined },
    afterHead: found.afterHead,
    residual: found.residual,
    embeddingScale: arch.family?.embeddingScale,
    prunedHead: found.prunedHead, atEmbedding: found.atEmbedding,
    embeddingNorm: arch.family?.embeddingNorm,
    stateInputs: model.graph.input.filter((i) => FLOAT_TYPES.has(i.type?.tensor_type?.elem_type ?? 0) && !i.name.startsWith('past_key_values.')).map((i) => i.name),
    graph: { merged: found.merged, fusedNorms: found.fusedNorms, fusedAttention: found.fusedAttention, rotaryCacheSwitch: found.rotaryCacheSwitch },
    cache: { entry: source.entryDir, ready: entryReady(source) },
  };
}
