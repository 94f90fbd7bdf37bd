// The JSON record lens emits for one prompt at one position (the contract documented in the
// README), computed from the lens logits of each residual site at that position.
import { fastExp, rankOf, vectorStats, logSumExp, type VectorStats } from './math.js';

export interface TokenInfo { id: number; text: string }
export interface TopEntry { id: number; token: string; prob: number; logit: number }
/** One token of a target, read at its own position (teacher-forced): `prob` is P(token | prompt, earlier pieces). */
export interface PieceEntry { id: number; text: string; prob: number; logit: number; rank: number }
/**
 * A target at one site: `text` the whole target, `id`/`logit`/`rank` of its first token, `prob` the
 * product of its pieces' probabilities and `logprob` its natural log; `pieces` one entry per token.
 */
export interface TargetEntry {
  text: string; id: number; prob: number; logit: number; rank: number; logprob: number; pieces: PieceEntry[];
  /** The first layer from which the target (its first token) stays top-1 (top-10) at every layer through the last; null if it is not top-1 (top-10) at the last. The same in every layer's entry. */
  first_top1: number | null;
  first_top10: number | null;
}
/** Where on the residual stream an entry reads: after the whole block (layer 0: the embeddings), or after its attention only. */
export type Site = 'block' | 'attn';
export interface LayerRecord { layer: number; site: Site; top: TopEntry[]; entropy: number; kl_to_final: number; targets: TargetEntry[] }
/** The lens: the final norm and head on each residual (norm), without the norm (raw), or after the tuned lens's translators (tuned). */
export type LensMode = 'norm' | 'raw' | 'tuned';
export interface LensRecord {
  model: string;
  mode: LensMode;
  prompt: string;
  tokens: TokenInfo[];
  position: number;
  /** One entry per site in computation order: {0,block}, ({1,attn},) {1,block}, …, {L,block}. */
  layers: LayerRecord[];
}

/**
 * Where a prompt's targets came from: given by the user, the seed's defaults (no prompt given
 * either), the distinct top-1 tokens of the layers (final first), or the final layer's top 2.
 */
export type TargetOrigin = 'given' | 'seed' | 'lens-top1' | 'lens-top2';

/** A target to follow: its whole text and its token ids [m ≥ 1]. */
export interface Target { text: string; ids: number[] }

/** The statistics of every site at one position, [sites]; the last site is the final layer. */
export type SiteStats = (VectorStats & { kl: number })[];

/** The final layer's probabilities in siteStats, kept between calls (siteStats is synchronous, so one per thread suffices). */
let probsScratch = new Float64Array(0);

/**
 * Per site, from its logit vector [V] at one position ([sites][V], the last the final layer): top-k
 * (k ≥ 2 kept for default targets), log-partition, entropy, and KL(final ‖ site). Throws on no sites.
 */
export function siteStats(siteLogits: ArrayLike<number>[], k: number): SiteStats {
  const finalLogits = siteLogits.at(-1);
  if (!finalLogits) throw new RangeError('no sites');
  const kept = Math.max(k, 2);
  const final = vectorStats(finalLogits, kept);
  // Reused from call to call: a fresh 400 KB array costs a page fault per page here on every prompt.
  if (probsScratch.length < finalLogits.length) probsScratch = new Float64Array(finalLogits.length);
  const finalProbs = probsScratch.subarray(0, finalLogits.length);
  for (let i = 0; i < finalProbs.length; i++) finalProbs[i] = fastExp(finalLogits[i] - final.logZ); // (Float64Array.from with a map function is ~20x slower)
  return siteLogits.map((logits, s) => {
    if (s === siteLogits.length - 1) return { ...final, kl: 0 };
    // KL(P ‖ Q) = Σ p (log p − x + logZ) = −H(P) − Σ p·x + logZ.
    const stats = vectorStats(logits, kept, finalProbs);
    return { ...stats, kl: Math.max(0, -final.entropy - stats.dot + stats.logZ) };
  });
}

/**
 * Where a target's pieces are read: `pieceLogits[i][s]` [m][sites][V] is site s's logit vector at the
 * position that predicts piece i (from one forward over the prompt and the earlier pieces). Absent for
 * a single-token target read from the record's own logits.
 */
export interface TargetInput extends Target { pieceLogits?: ArrayLike<number>[][] }

export interface RecordInput {
  model: string;
  mode: LensMode;
  prompt: string;
  tokens: TokenInfo[];
  position: number;
  /** The site of each entry, in computation order. */
  sites: { layer: number; site: Site }[];
  /** One logit vector per site at the position, [sites][V]. */
  siteLogits: ArrayLike<number>[];
  /** siteStats(siteLogits, k), when already computed. */
  stats?: SiteStats;
  k: number;
  targets: TargetInput[];
  tokenText: (id: number) => string;
}

/** Builds the record: top-k, entropy, KL to the final layer and target stats per site. Throws on no sites or a site count mismatch. */
export function buildRecord(input: RecordInput): LensRecord {
  const stats = input.stats ?? siteStats(input.siteLogits, input.k);
  if (stats.length !== input.sites.length || input.siteLogits.length !== input.sites.length) throw new RangeError('one logit vector per site is needed');
  // Log-probabilities are summed as logs: a product of small probabilities must not underflow to 0 first.
  const piece = (logits: ArrayLike<number>, logZ: number, id: number): PieceEntry & { logprob: number } =>
    ({ id, text: input.tokenText(id), prob: Math.exp(logits[id] - logZ), logit: logits[id], rank: rankOf(logits, id), logprob: logits[id] - logZ });
  const layers = input.sites.map(({ layer, site }, s): LayerRecord => {
    const { logZ, entropy, top, kl } = stats[s];
    const logits = input.siteLogits[s];
    const targets = input.targets.map((t): TargetEntry => {
      const pieces = t.pieceLogits
        ? t.ids.map((id, i) => { const v = t.pieceLogits![i][s]; return piece(v, logSumExp(v), id); })
        : [piece(logits, logZ, t.ids[0])];
      const logprob = pieces.reduce((sum, p) => sum + p.logprob, 0);
      return {
        text: t.text, id: pieces[0].id, prob: Math.exp(logprob), logit: pieces[0].logit, rank: pieces[0].rank, logprob,
        pieces: pieces.map(({ id, text, prob, logit, rank }) => ({ id, text, prob, logit, rank })),
        first_top1: null, first_top10: null,
      };
    });
    return {
      layer, site,
      top: top.slice(0, input.k).map((id) => ({ id, token: input.tokenText(id), prob: Math.exp(logits[id] - logZ), logit: logits[id] })),
      entropy, kl_to_final: kl, targets,
    };
  });
  input.targets.forEach((_, j) => {
    const ranks = layers.filter((l) => l.site === 'block').map((l) => ({ layer: l.layer, rank: l.targets[j].rank }));
    const first = { first_top1: firstLayerStaying(ranks, 1), first_top10: firstLayerStaying(ranks, 10) };
    for (const l of layers) Object.assign(l.targets[j], first);
  });
  return { model: input.model, mode: input.mode, prompt: input.prompt, tokens: input.tokens, position: input.position, layers };
}

/**
 * The first layer from which `rank` stays ≤ `best` through the last entry of `ranks` (block layers
 * in order, the last the final layer); null when it is not within `best` at the last.
 */
export function firstLayerStaying(ranks: { layer: number; rank: number }[], best: number): number | null {
  let first: number | null = null;
  for (let i = ranks.length - 1; i >= 0 && ranks[i].rank <= best; i--) first = ranks[i].layer;
  return first;
}
