// What lens knows about decoder families, in one place (as tuned-lens keeps it): the
// config.json field names of each family, its final norm, head and residual topology.
// Everything else is found in the graph by structure; a model_type not listed here is read
// with the common field names and must show an unambiguous pre-norm decoder in its graph.
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.js';

export type NormKind = 'LayerNorm' | 'RMSNorm' | 'RMSNorm (1 + w)';
export type Topology = 'sequential' | 'parallel';

export interface FamilyInfo {
  /** The Hugging Face model class lens reads. */
  name: string;
  norm: NormKind;
  /** The head's module and whether it is tied to the token embedding by default. */
  head: { module: string; tiedByDefault: boolean; bias: boolean };
  residual: Topology;
  /** Gemma multiplies the embeddings by √d before block 1 (r₀ is after the scaling). */
  embeddingScale?: 'sqrt(d)';
  /** BLOOM normalizes the embeddings before block 1 (r₀ is after the norm). */
  embeddingNorm?: 'LayerNorm';
  /** OPT-350m-style: the embeddings are projected up before block 1 and the final norm's output down before the head (project_in/project_out, when word_embed_proj_dim ≠ hidden_size). */
  projections?: 'project_in/project_out';
  /** Hybrid caches: inputs beside the key/value cache that a prompt starts with at zero. */
  stateInputs?: string;
}

const LLAMA_LIKE = (name: string, tiedByDefault: boolean): FamilyInfo => ({ name, norm: 'RMSNorm', head: { module: 'lm_head', tiedByDefault, bias: false }, residual: 'sequential' });
const GEMMA_LIKE = (name: string): FamilyInfo => ({ name, norm: 'RMSNorm (1 + w)', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'sequential', embeddingScale: 'sqrt(d)' });

/** Known decoder families by config model_type. */
export const FAMILIES: Readonly<Record<string, FamilyInfo>> = {
  gpt2: { name: 'GPT2LMHeadModel', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'sequential' },
  gpt_neo: { name: 'GPTNeoForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'sequential' },
  gpt_neox: { name: 'GPTNeoXForCausalLM', norm: 'LayerNorm', head: { module: 'embed_out', tiedByDefault: false, bias: false }, residual: 'parallel' },
  gptj: { name: 'GPTJForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: false, bias: true }, residual: 'parallel' },
  llama: LLAMA_LIKE('LlamaForCausalLM', false),
  mistral: LLAMA_LIKE('MistralForCausalLM', false),
  qwen2: LLAMA_LIKE('Qwen2ForCausalLM', false),
  qwen3: LLAMA_LIKE('Qwen3ForCausalLM', false),
  // The sparse MoE block is one branch into the residual, like a dense MLP: its experts stay as exported.
  qwen3_moe: LLAMA_LIKE('Qwen3MoeForCausalLM', false),
  smollm3: LLAMA_LIKE('SmolLM3ForCausalLM', true),
  // Granite's multipliers (embedding, residual branches, logits) are ops the graph shows.
  granite: LLAMA_LIKE('GraniteForCausalLM', false),
  phi3: LLAMA_LIKE('Phi3ForCausalLM', false),
  stablelm: { ...LLAMA_LIKE('StableLmForCausalLM', false), norm: 'LayerNorm' },
  olmo2: LLAMA_LIKE('Olmo2ForCausalLM', false),
  cohere: { name: 'CohereForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'parallel' },
  gemma: GEMMA_LIKE('GemmaForCausalLM'),
  gemma2: GEMMA_LIKE('Gemma2ForCausalLM'),
  gemma3_text: GEMMA_LIKE('Gemma3ForCausalLM'),
  phi: { name: 'PhiForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: false, bias: true }, residual: 'parallel' },
  opt: { name: 'OPTForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'sequential', projections: 'project_in/project_out' },
  bloom: { name: 'BloomForCausalLM', norm: 'LayerNorm', head: { module: 'lm_head', tiedByDefault: true, bias: false }, residual: 'sequential', embeddingNorm: 'LayerNorm' },
  lfm2: { ...LLAMA_LIKE('Lfm2ForCausalLM', true), stateInputs: 'past_conv.N (short-convolution layers)' },
};

// Field names per quantity, first found wins: GPT-2's, GPT-Neo's, then the common ones.
const FIELDS = {
  layers: ['n_layer', 'num_layers', 'num_hidden_layers'],
  width: ['n_embd', 'hidden_size', 'd_model'],
  heads: ['n_head', 'num_heads', 'num_attention_heads'],
  kvHeads: ['num_key_value_heads'],
  context: ['n_positions', 'max_position_embeddings', 'n_ctx'],
} as const;

// Families that are not pre-norm decoders, named so the error says what the model is.
const ENCODERS = new Set(['bert', 'roberta', 'distilbert', 'albert', 'electra', 'deberta', 'deberta-v2', 'xlm-roberta', 'camembert', 'mpnet', 'modernbert', 'esm', 'vit', 'clip', 'whisper-encoder']);
const ENCODER_DECODERS = new Set(['t5', 'mt5', 'longt5', 'bart', 'mbart', 'marian', 'pegasus', 'whisper', 'm2m_100', 'nllb', 'blenderbot', 'encoder-decoder', 'vision-encoder-decoder']);
const POST_NORM = new Set(['openai-gpt']);

export interface Architecture {
  modelType: string;
  /** The family's entry, or undefined for a model_type lens does not know (read by structure only). */
  family?: FamilyInfo;
  layers: number;
  width?: number;
  heads?: number;
  kvHeads?: number;
  vocabSize: number;
  /** The longest sequence the model takes (Infinity when the config does not say). */
  contextLength: number;
  /** Whether config.json ties the head to the embedding (its tie_word_embeddings, or the family's default). */
  tiedInConfig: boolean;
}

function firstNumber(config: Record<string, unknown>, names: readonly string[]): number | undefined {
  for (const name of names) {
    const value = Number(config[name]);
    if (config[name] !== undefined && config[name] !== null && Number.isFinite(value)) return value;
  }
  return undefined;
}

/** Reads a config.json (parsed) as a decoder's architecture. Throws UserError for what is not a pre-norm decoder. */
export function readArchitecture(config: Record<string, unknown>, where: string): Architecture {
  const modelType = String(config.model_type ?? 'unknown');
  const architectures = Array.isArray(config.architectures) ? config.architectures.map(String) : [];
  const looked = 'lens reads pre-norm decoder-only language models';
  const withHead = architectures.some((a) => /CausalLM|LMHead/.test(a));
  if (ENCODERS.has(modelType) || (!withHead && architectures.some((a) => /For(MaskedLM|SequenceClassification|TokenClassification|QuestionAnswering)$/.test(a)))) {
    throw new UserError(`${where} describes an encoder (${modelType}), not a decoder with an LM head: ${looked}`);
  }
  if (config.is_encoder_decoder === true || ENCODER_DECODERS.has(modelType)) {
    throw new UserError(`${where} describes an encoder-decoder (${modelType}): ${looked}`);
  }
  if (POST_NORM.has(modelType) || (modelType === 'opt' && config.do_layer_norm_before === false)) {
    throw new UserError(`${where} describes a post-norm decoder (${modelType}), which has no final norm to read the residual stream through: ${looked}`);
  }
  if (modelType === 'bloom' && config.apply_residual_connection_post_layernorm === true) {
    throw new UserError(`${where} describes a BLOOM whose blocks add each branch to its normed input (apply_residual_connection_post_layernorm), so no residual stream runs through its blocks unnormalized: ${looked}`);
  }
  if (architectures.length > 0 && !withHead) {
    throw new UserError(`${where} describes a model without an LM head (${architectures.join(', ')}): ${looked}`);
  }
  const family = FAMILIES[modelType];
  const layers = firstNumber(config, FIELDS.layers);
  const vocabSize = firstNumber(config, ['vocab_size']);
  if (!(layers !== undefined && layers > 0) || !(vocabSize !== undefined && vocabSize > 0)) {
    throw new UserError(`${where} does not give the number of layers (${FIELDS.layers.join(', ')}) and the vocabulary size (vocab_size)`);
  }
  const tie = config.tie_word_embeddings;
  return {
    modelType, family, layers, vocabSize,
    width: firstNumber(config, FIELDS.width),
    heads: firstNumber(config, FIELDS.heads),
    kvHeads: firstNumber(config, FIELDS.kvHeads),
    contextLength: firstNumber(config, FIELDS.context) ?? Infinity,
    tiedInConfig: typeof tie === 'boolean' ? tie : (family?.head.tiedByDefault ?? true),
  };
}

/**
 * For a model_type transformers.js does not know: the known one whose config names the layer
 * count the same way (transformers.js reads it to name the past inputs), to load the model as.
 */
export function loaderModelType(config: Record<string, unknown>): string {
  if (config.n_layer !== undefined) return 'gpt2';
  if (config.num_layers !== undefined) return 'gpt_neo';
  return config.num_key_value_heads !== undefined ? 'llama' : 'gpt_neox';
}

/** Parses a config.json. Throws UserError when it cannot be read or is not a JSON object. */
export function readConfigFile(path: string): Record<string, unknown> {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value;
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as Error).message}`);
  }
}
