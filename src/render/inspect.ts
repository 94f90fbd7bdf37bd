// `lens inspect` as text: one aligned "label  value" row per fact lens found in the model.
import type { Inspection } from '../model/inspect.js';

/** The inspection as aligned "label  value" lines (no trailing newline). */
export function renderInspection(r: Inspection): string {
  const heads = r.heads === undefined ? '' : ` (${r.heads} heads${r.kvHeads !== undefined && r.kvHeads !== r.heads ? `, ${r.kvHeads} KV heads` : ''})`;
  const head = r.head.tied
    ? `tied to the token embedding ${r.head.tiedTo}`
    : `its own weight${r.head.weight ? ` ${r.head.weight}` : ''}${r.head.bias ? ', with a bias' : ''}`;
  const forms = [r.graph.merged ? 'merged decoder (If), read through its no-past branch' : '', r.graph.fusedNorms ? 'onnxruntime-fused norms (Skip*LayerNormalization), split to read the residual' : '',
    r.graph.fusedAttention.length ? `fused attention (${r.graph.fusedAttention.join(', ')})` : '',
    r.graph.rotaryCacheSwitch ? 'rotary caches picked by an If on the sequence length (LongRoPE), left to onnxruntime' : ''].filter(Boolean);
  const rows: [string, string][] = [
    ['model', r.model],
    ['onnx', `${r.onnx} (${r.dtype})`],
    ['family', r.family ? `${r.modelType} (${r.family})` : `${r.modelType} (not in lens's table: read by structure)`],
    ['layers', String(r.layers)],
    ['width', `${r.width ?? '?'}${heads}`],
    ['context', r.contextLength === null ? 'not given' : `${r.contextLength} tokens`],
    ['vocabulary', String(r.vocabSize)],
    ['final norm', `${r.finalNorm.kind}, node ${r.finalNorm.node} (${r.finalNorm.op})`],
    ['head', `${head}, node ${r.head.node} (${r.head.op})${r.prunedHead ? '; the model scores its last position only, the lens every position it reads' : ''}`],
    ...(r.afterHead.length ? [['after head', `${r.afterHead.join(', ')} (the lens applies them to every layer)`] as [string, string]] : []),
    ...(r.atEmbedding.length ? [['at embedding', `${r.atEmbedding.join(', ')} (layer 0 is after them)`] as [string, string]] : []),
    ['residual', r.residual === 'parallel' ? 'parallel: h + attn(ln1 h) + mlp(ln2 h)' : 'sequential: attention, then MLP'],
    ...(r.embeddingScale ? [['embeddings', `scaled by ${r.embeddingScale} before block 1 (r0 is after the scaling)`] as [string, string]] : []),
    ...(r.embeddingNorm ? [['embeddings', `${r.embeddingNorm} before block 1 (r0 is after the norm)`] as [string, string]] : []),
    ...(r.stateInputs.length ? [['state inputs', `${r.stateInputs.join(', ')} (beside the KV cache; zeros at a prompt's start)`] as [string, string]] : []),
    ...(forms.length ? [['graph', forms.join('; ')] as [string, string]] : []),
    ['cache', `${r.cache.entry} (${r.cache.ready ? 'ready' : 'built on the first run'})`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}
