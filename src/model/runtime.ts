// The only module that touches transformers.js and onnxruntime: loads the tokenizer, the
// config and the rewritten model, and runs the lens. Imported lazily, only when a command runs.
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env as hfEnv, Tensor, type PreTrainedModel, type PreTrainedTokenizer } from '@huggingface/transformers';
import { UserError } from '../errors.js';
import type { FinalHead, HeadInputs } from '../lens/attribution.js';
import { ATTRIBUTION_IO } from '../onnx/attribution-graph.js';
import { LENS_IO } from '../onnx/lens-graph.js';
import { halfToFloat } from '../onnx/proto.js';
import { loaderModelType, readArchitecture } from './architecture.js';
import { byteLevelText, isSentencePieceVocab, sentencePieceText } from '../lens/tokens.js';
import { resolveModel, type ResolvedModel, type ResolveOptions } from './hub.js';
import { discardEntry, prepareLensModel, type PreparedModel } from './prepare.js';
import type { LensMode } from '../lens/record.js';
import type { Translators } from '../tuned/translators.js';

/** A point of the residual stream: after block `layer` (0: the embeddings), or after its attention only. */
export interface SiteId { layer: number; site: 'block' | 'attn' }

export interface LensRun {
  /** Lens logits, [sites, positions, vocab] flattened (site-major, sites in computation order). */
  logits: Float32Array;
  /** The residual stream at the sites and positions, [sites, positions, d] flattened. */
  hidden: Float32Array;
  /** The sites of the rows: {0,block}, ({l,attn},) {l,block}, …, {L,block}. */
  sites: SiteId[];
  /** What direct logit attribution reads, when the run asked for it. */
  attribution?: AttributionRun;
}

/** The final norm and head as attribution reads them, for the targets of one run (FinalHead's arrays as read). */
export interface AttributionRun extends FinalHead {
  unembedRows: Float32Array;
  headBias: Float32Array;
  gain: Float32Array;
  bias: Float32Array;
  /** Parallel blocks: attn_1, mlp_1, …, attn_L, mlp_L at each position, [2L, positions, d] flattened. */
  branches?: Float32Array;
  /** With `heads`: each layer's attention output before its output projection [L, positions, K], the projections [L, K, d] and their biases [L, d]. */
  heads?: HeadInputs;
}

export interface RunOptions {
  /** Also read the residual after each block's attention (TransformerLens resid_mid); needs `midSites`. */
  sublayers?: boolean;
  /** Also read what attribution needs for these target ids (and each attention head's output with `heads`); needs `attributable`. */
  attribution?: { targets: number[]; heads?: boolean };
  /** With mode 'tuned': the translators of the sites 0..count−1 (count = layers; without sublayers). */
  translators?: Translators;
}

export interface LensModel {
  id: string;
  /** The model as resolved when it was loaded: its directory, files, dtype and cache entry. */
  source: ResolvedModel;
  /** Number of blocks L; the lens has L+1 layers (0 = embeddings). */
  layers: number;
  /** The residual stream's width d, from config.json (undefined if it names none). */
  width?: number;
  vocabSize: number;
  /** The longest sequence the model takes (n_positions). */
  contextLength: number;
  /** Token ids of a prompt as the tokenizer's post-processor writes them (a BOS it adds is at position 0). */
  encodePrompt(text: string): number[];
  /** Whether the blocks have a residual between attention and MLP (false for parallel blocks). */
  midSites: boolean;
  /** Whether the graph exposes the final norm and head weights that direct logit attribution reads. */
  attributable: boolean;
  /** Whether it also exposes each attention's output projection (per-head attribution); `attentionHeads` from the config. */
  headSites: boolean;
  /** Without headSites (and attributable): why the graph has no per-head parts, as one sentence. */
  headsRefused?: string;
  /** Without attributable: why the graph's final norm and head cannot be read, as one sentence. */
  attributionRefused?: string;
  attentionHeads?: number;
  /** Token ids of a text, with no special tokens added. */
  encode(text: string): number[];
  /** The text of one token, leading spaces kept. */
  tokenText(id: number): string;
  /** Runs the model once; positions must be in [0, ids.length). Throws if `sublayers` is asked of a model without mid sites. */
  run(ids: number[], positions: number[], mode: LensMode, options?: RunOptions): Promise<LensRun>;
  dispose(): Promise<void>;
}

export interface LoadOptions extends ResolveOptions {
  /** Told when the one-time graph rewrite starts. */
  onPrepare?: () => void;
  /** Many prompts will follow (--file): spend load time on packed weights for faster runs. */
  batch?: boolean;
}

function configureTransformers(cacheRoot: string): void {
  // lens downloads and caches files itself; transformers.js only ever reads local directories.
  hfEnv.allowRemoteModels = false;
  hfEnv.allowLocalModels = true;
  hfEnv.useFSCache = false;
  hfEnv.useBrowserCache = false;
  hfEnv.cacheDir = join(cacheRoot, 'transformers');
  hfEnv.localModelPath = '';
}

/**
 * Loads a model for the lens: a --model value (resolved here, downloading it as needed) or a model
 * resolved already; prepares it as needed. Throws UserError.
 */
export async function loadLensModel(spec: string | ResolvedModel, options: LoadOptions): Promise<LensModel> {
  const source = typeof spec === 'string' ? await resolveModel(spec, options) : spec;
  const { dir, id } = source;
  configureTransformers(source.cacheRoot);
  // The model's own loading reads the config through transformers.js; lens reads its shape
  // through the architecture table (each family's field names) and refuses non-decoders here.
  const configPath = join(dir, 'config.json');
  const rawConfig = source.config;
  const arch = readArchitecture(rawConfig, configPath);
  const { layers, vocabSize, contextLength, width } = arch;

  let tokenizer: PreTrainedTokenizer;
  try {
    tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  } catch (error) {
    throw new UserError(`cannot load the tokenizer of ${id}: ${(error as Error).message}`);
  }

  const load = async (prepared: PreparedModel) => {
    // Prepacking rearranges every weight matrix at load: about 1.5 s more for GPT-2-small, then
    // about 20 ms less per prompt. Worth it for a batch; not for a prompt or two on the command
    // line, when the head streams the tied embedding (an untied head needs its packed W_U). Always
    // for integer and n-bit products: a model session prepacks, and without it onnxruntime may
    // compute them with another kernel (on Arm with SME, another quantization), not as the model does.
    const prepack = options.batch === true || !prepared.tiedHead || prepared.quantizedProducts;
    const session_options = prepack ? {} : { extra: { session: { disable_prepacking: '1' } } };
    const from = (config?: Record<string, unknown>) => AutoModelForCausalLM.from_pretrained(prepared.dir, {
      dtype: source.dtype, device: 'cpu', local_files_only: true, session_options, ...(config ? { config } : {}),
    } as never);
    try {
      return await from();
    } catch (error) {
      // transformers.js only loads model types it knows; lens found the structure itself, so a
      // family new to both is loaded as the known one whose config field names it shares.
      if (!/Unsupported model type/.test((error as Error).message)) throw error;
      return from({ ...rawConfig, model_type: loaderModelType(rawConfig) });
    }
  };
  let prepared = await prepareLensModel(source, layers, options.onPrepare);
  let model: PreTrainedModel;
  try {
    model = await load(prepared);
  } catch (error) {
    if (prepared.built) throw new UserError(`onnxruntime cannot load ${id}: ${firstLine((error as Error).message)}`);
    // A cached entry that passed its checks but does not load: damaged in a way they miss. Rebuild once.
    discardEntry(prepared.dir);
    prepared = await prepareLensModel(source, layers, options.onPrepare);
    try {
      model = await load(prepared);
    } catch (retryError) {
      throw new UserError(`onnxruntime cannot load ${id}: ${firstLine((retryError as Error).message)}`);
    }
  }

  // SentencePiece decoders strip the leading space of a lone piece and turn a lone byte into
  // U+FFFD: show such vocabularies piece by piece instead. Byte-level BPE decodes faithfully.
  // A byte-level token that is part of a character decodes to U+FFFD: it is shown from its piece
  // as <0xHH>. (The piece table is built only when needed: listing 50k+ pieces costs ~70 ms.)
  const sentencePiece = isSentencePieceVocab((piece) => tokenizer.convert_tokens_to_ids(piece) !== undefined);
  let pieceTable: string[] | undefined;
  const pieceOf = (tokenId: number) => {
    if (!pieceTable) {
      pieceTable = [];
      for (const [piece, pieceId] of tokenizer.get_vocab() as Map<string, number>) pieceTable[pieceId] = piece;
    }
    return pieceTable[tokenId] as string | undefined;
  };
  const tokenText = (tokenId: number) => {
    const piece = sentencePiece ? pieceOf(tokenId) : undefined;
    if (piece !== undefined) return sentencePieceText(piece);
    const text = tokenizer.decode([tokenId], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (sentencePiece || !text.includes('\ufffd')) return text;
    const raw = pieceOf(tokenId);
    return (raw !== undefined ? byteLevelText(raw) : undefined) ?? text;
  };

  const { inputNames } = (model as unknown as { sessions: Record<string, { inputNames: string[] }> }).sessions.model;
  const midSites = inputNames.includes(LENS_IO.midPositions);
  const attributable = inputNames.includes(ATTRIBUTION_IO.targetIds);
  const branchSites = inputNames.includes(ATTRIBUTION_IO.branchPositions);
  const headSites = inputNames.includes(ATTRIBUTION_IO.headPositions);
  return {
    id, source, layers, width, vocabSize, contextLength, midSites, attributable, headSites, attentionHeads: arch.heads,
    ...(prepared.headsRefused && !headSites ? { headsRefused: prepared.headsRefused } : {}),
    ...(prepared.attributionRefused && !attributable ? { attributionRefused: prepared.attributionRefused } : {}),
    encodePrompt: (text) => tokenizer.encode(text, { add_special_tokens: true }),
    encode: (text) => {
      // A SentencePiece normalizer that prepends ▁ turns " Paris" into "▁▁Paris": the text's own
      // space is already that ▁, so a bare leading ▁ piece is dropped.
      const ids = tokenizer.encode(text, { add_special_tokens: false });
      return sentencePiece && ids.length > 1 && pieceOf(ids[0]) === '\u2581' ? ids.slice(1) : ids;
    },
    tokenText,
    async run(ids, positions, mode, runOptions = {}) {
      const seq = ids.length;
      const ones = new BigInt64Array(seq).fill(1n);
      const sublayers = runOptions.sublayers === true;
      if (sublayers && !midSites) throw new Error('this model has no mid-block residual');
      const attribution = runOptions.attribution;
      if (attribution && !attributable) throw new Error('this model exposes nothing to attribute');
      const translators = runOptions.translators;
      if ((mode === 'tuned') !== (translators !== undefined) || (translators && sublayers)) throw new Error('translators go with the tuned mode, without sublayers');
      const sites: SiteId[] = [{ layer: 0, site: 'block' }];
      for (let l = 1; l <= layers; l++) sites.push(...(sublayers ? [{ layer: l, site: 'attn' as const }] : []), { layer: l, site: 'block' });
      const P = positions.length;
      const rows = sites.length * P;
      // In --raw only the last site, r_L, goes through the final norm (hidden_states[L] is ln_f(r_L)).
      const normMask = Array.from({ length: rows }, (_, r) => mode !== 'raw' || r >= rows - P);
      const toInt64 = (values: number[]) => new Tensor('int64', BigInt64Array.from(values.map(BigInt)), [values.length]);
      const outputs = await (model as unknown as { forward(i: Record<string, Tensor>): Promise<Record<string, Tensor>> }).forward({
        input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, seq]),
        attention_mask: new Tensor('int64', ones, [1, seq]),
        position_ids: new Tensor('int64', BigInt64Array.from({ length: seq }, (_, i) => BigInt(i)), [1, seq]),
        [LENS_IO.positions]: toInt64(positions),
        ...(midSites ? { [LENS_IO.midPositions]: toInt64(sublayers ? positions : []) } : {}),
        [LENS_IO.normMask]: new Tensor('bool', Uint8Array.from(normMask.map(Number)), [rows]),
        // Empty unless attributing: then the head's rows and the branches cost nothing.
        ...(attributable ? { [ATTRIBUTION_IO.targetIds]: toInt64(attribution?.targets ?? []) } : {}),
        ...(branchSites ? { [ATTRIBUTION_IO.branchPositions]: toInt64(attribution ? positions : []) } : {}),
        ...(headSites ? { [ATTRIBUTION_IO.headPositions]: toInt64(attribution?.heads ? positions : []), [ATTRIBUTION_IO.headRowCount]: toInt64([attribution?.heads ? 2 ** 62 : 0]) } : {}),
        // The logit lens passes no translators: empty tensors, and the graph's translation is a copy.
        [LENS_IO.translatorWeight]: translators
          ? new Tensor('float32', translators.weight, [translators.count, translators.width, translators.width])
          : new Tensor('float32', new Float32Array(0), [0, 1, 1]),
        [LENS_IO.translatorBias]: translators
          ? new Tensor('float32', translators.bias, [translators.count, 1, translators.width])
          : new Tensor('float32', new Float32Array(0), [0, 1, 1]),
      });
      const run: LensRun = { logits: toFloat32(outputs[LENS_IO.logits]), hidden: toFloat32(outputs[LENS_IO.hidden]), sites };
      if (attribution) {
        const [epsilon, centred] = toFloat32(outputs[ATTRIBUTION_IO.normShape]);
        const gain = toFloat32(outputs[ATTRIBUTION_IO.normGain]);
        const read: AttributionRun = {
          unembedRows: toFloat32(outputs[ATTRIBUTION_IO.unembedRows]), headBias: toFloat32(outputs[ATTRIBUTION_IO.headBias]),
          headScale: toFloat32(outputs[ATTRIBUTION_IO.headScale])[0], softcap: toFloat32(outputs[ATTRIBUTION_IO.headSoftcap])[0] || undefined, gain,
          bias: outputs[ATTRIBUTION_IO.normBias] ? toFloat32(outputs[ATTRIBUTION_IO.normBias]) : new Float32Array(gain.length),
          epsilon, centred: centred === 1, roundsInput: toFloat32(outputs[ATTRIBUTION_IO.headRounds])[0] === 1,
          branches: outputs[ATTRIBUTION_IO.branches] ? toFloat32(outputs[ATTRIBUTION_IO.branches]) : undefined,
        };
        if (attribution.heads) {
          if (!headSites || !arch.heads) throw new Error('this model exposes no attention heads to attribute');
          read.heads = {
            inputs: toFloat32(outputs[ATTRIBUTION_IO.headInputs]), weights: toFloat32(outputs[ATTRIBUTION_IO.headWeights]),
            biases: toFloat32(outputs[ATTRIBUTION_IO.headBiases]), count: arch.heads,
          };
        }
        run.attribution = read;
      }
      return run;
    },
    async dispose() {
      await model.dispose();
    },
  };
}

function toFloat32(tensor: Tensor): Float32Array {
  const data = tensor.data as ArrayLike<number>;
  if (data instanceof Float32Array) return data;
  if (tensor.type === 'float16' && data instanceof Uint16Array) return Float32Array.from(data, halfToFloat);
  return Float32Array.from(data);
}

function firstLine(text: string): string {
  return text.split('\n')[0].slice(0, 300);
}
