// Checks of the CLI's output shared by the end-to-end and fuzz tests: a record's full schema,
// its values against the float64 reference, and the human output against the JSON of the same run.
import assert from 'node:assert/strict';
import type { LensRecord } from '../src/lens/record.js';
import type { Gpt2Weights } from './fixtures/gpt2.js';
import { referenceForward, referenceLens, referenceLensSites, referenceTargetLogProb } from './reference/gpt2.js';
import { entropy, kl, logProbs, nearTies, rankBounds } from './reference/stats.js';
import { assertClose } from './helpers.js';

/** What a test knows a record must hold; `layers` is L (the record has L+1 entries, 2L+1 with `sublayers`). */
export interface RecordShape { layers: number; vocab: number; k?: number; targets?: number; mode?: 'norm' | 'raw'; position?: number; prompt?: string; sublayers?: boolean }

const RECORD_KEYS = ['model', 'mode', 'prompt', 'tokens', 'position', 'layers'];
const LAYER_KEYS = ['layer', 'top', 'entropy', 'kl_to_final', 'targets'];

/** Keys in order, with `site` (validated: "block" or "attn") left out. */
function keysOf(value: object, what: string): string[] {
  const site = (value as { site?: unknown }).site;
  if (site !== undefined) assert.ok(site === 'block' || site === 'attn', `${what}.site: ${JSON.stringify(site)}`);
  return Object.keys(value).filter((k) => k !== 'site');
}

/** The sites a record must list, in computation order: {0,block}, ({1,attn},) {1,block}, …, {L,block}. */
function expectedSites(layers: number, sublayers: boolean): { layer: number; site: 'block' | 'attn' }[] {
  const sites: { layer: number; site: 'block' | 'attn' }[] = [{ layer: 0, site: 'block' }];
  for (let l = 1; l <= layers; l++) sites.push(...(sublayers ? [{ layer: l, site: 'attn' as const }] : []), { layer: l, site: 'block' });
  return sites;
}

const isId = (id: unknown, vocab: number) => Number.isInteger(id) && (id as number) >= 0 && (id as number) < vocab;
const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Asserts `record` (parsed JSON) has the record's full schema: keys, types, counts, finite numbers, prob in [0, 1], rank in 1..V, layers 0..L. */
export function assertRecordShape(record: unknown, shape: RecordShape, what = 'record'): asserts record is LensRecord {
  assert.ok(record !== null && typeof record === 'object' && !Array.isArray(record), `${what} is not an object`);
  const r = record as LensRecord;
  assert.deepEqual(keysOf(r, what), RECORD_KEYS, `${what} keys`);
  assert.ok(typeof r.model === 'string' && r.model.length > 0, `${what}.model`);
  assert.ok(r.mode === 'norm' || r.mode === 'raw', `${what}.mode ${r.mode}`);
  if (shape.mode) assert.equal(r.mode, shape.mode, `${what}.mode`);
  assert.ok(typeof r.prompt === 'string' && r.prompt.length > 0, `${what}.prompt`);
  if (shape.prompt !== undefined) assert.equal(r.prompt, shape.prompt, `${what}.prompt`);
  assert.ok(Array.isArray(r.tokens) && r.tokens.length > 0, `${what}.tokens`);
  for (const t of r.tokens) {
    assert.deepEqual(Object.keys(t), ['id', 'text'], `${what} token keys`);
    assert.ok(isId(t.id, shape.vocab) && typeof t.text === 'string', `${what} token ${JSON.stringify(t)}`);
  }
  assert.ok(Number.isInteger(r.position) && r.position >= 0 && r.position < r.tokens.length, `${what}.position ${r.position} of ${r.tokens.length}`);
  if (shape.position !== undefined) assert.equal(r.position, shape.position, `${what}.position`);
  assert.ok(Array.isArray(r.layers), `${what}.layers`);
  const sublayers = shape.sublayers ?? r.layers.some((layer) => layer.site === 'attn');
  const sites = expectedSites(shape.layers, sublayers);
  assert.equal(r.layers.length, sites.length, `${what}: number of layers`);
  r.layers.forEach((layer, l) => {
    const at = `${what} L${l}`;
    assert.deepEqual(keysOf(layer, at), LAYER_KEYS, `${at} keys`);
    assert.deepEqual({ layer: layer.layer, site: layer.site }, sites[l], `${at}: site`);
    assert.ok(finite(layer.entropy) && layer.entropy >= 0 && layer.entropy <= Math.log(shape.vocab) + 1e-9, `${at}.entropy ${layer.entropy}`);
    assert.ok(finite(layer.kl_to_final) && layer.kl_to_final >= 0, `${at}.kl_to_final ${layer.kl_to_final}`);
    if (l === sites.length - 1) assert.equal(layer.kl_to_final, 0, `${at}: KL of the last layer to itself`);
    assert.ok(Array.isArray(layer.top), `${at}.top`);
    assert.equal(layer.top.length, Math.min(shape.k ?? layer.top.length, shape.vocab), `${at}: top-k count`);
    assert.ok(layer.top.length >= 1, `${at}: empty top`);
    let mass = 0;
    layer.top.forEach((t, j) => {
      assert.deepEqual(Object.keys(t), ['id', 'token', 'prob', 'logit'], `${at} top keys`);
      assert.ok(isId(t.id, shape.vocab) && typeof t.token === 'string', `${at} top ${JSON.stringify(t)}`);
      assert.ok(finite(t.prob) && t.prob >= 0 && t.prob <= 1 && finite(t.logit), `${at} top ${JSON.stringify(t)}`);
      mass += t.prob;
      const prev = layer.top[j - 1];
      if (prev) assert.ok(prev.logit > t.logit || (prev.logit === t.logit && prev.id < t.id), `${at}: top not best first at ${j}`);
    });
    assert.ok(mass <= 1 + 1e-9, `${at}: top probabilities sum to ${mass}`);
    assert.ok(Array.isArray(layer.targets), `${at}.targets`);
    if (shape.targets !== undefined) assert.equal(layer.targets.length, shape.targets, `${at}: number of targets`);
    for (const t of layer.targets) {
      assert.deepEqual(Object.keys(t), ['text', 'id', 'prob', 'logit', 'rank', 'logprob', 'pieces', 'first_top1', 'first_top10'], `${at} target keys`);
      assert.ok(isId(t.id, shape.vocab) && typeof t.text === 'string', `${at} target ${JSON.stringify(t)}`);
      assert.ok(finite(t.prob) && t.prob >= 0 && t.prob <= 1 && finite(t.logit), `${at} target ${JSON.stringify(t)}`);
      assert.ok(Number.isInteger(t.rank) && t.rank >= 1 && t.rank <= shape.vocab, `${at} target rank ${t.rank}`);
      // The product of the pieces (one for a single-token target), its log, and the first piece's id, logit and rank.
      assert.ok(Array.isArray(t.pieces) && t.pieces.length >= 1, `${at} target pieces`);
      assert.ok(finite(t.logprob) && t.logprob <= 1e-12, `${at} target logprob ${t.logprob}`);
      let logProduct = 0;
      for (const piece of t.pieces) {
        assert.deepEqual(Object.keys(piece), ['id', 'text', 'prob', 'logit', 'rank'], `${at} piece keys`);
        assert.ok(isId(piece.id, shape.vocab) && finite(piece.prob) && piece.prob >= 0 && piece.prob <= 1 && finite(piece.logit), `${at} piece ${JSON.stringify(piece)}`);
        assert.ok(Number.isInteger(piece.rank) && piece.rank >= 1 && piece.rank <= shape.vocab, `${at} piece rank ${piece.rank}`);
        logProduct += Math.log(piece.prob);
      }
      assert.deepEqual([t.pieces[0].id, t.pieces[0].logit, t.pieces[0].rank], [t.id, t.logit, t.rank], `${at}: the target's id, logit and rank are its first piece's`);
      if (logProduct > -700) assert.ok(Math.abs(logProduct - t.logprob) <= 1e-9 * Math.max(1, -logProduct), `${at}: logprob ${t.logprob} vs the pieces' ${logProduct}`);
      // (below 1e-300 a double is subnormal or 0 and keeps too few digits for its log to be compared)
      if (t.prob > 1e-300) assert.ok(Math.abs(Math.log(t.prob) - t.logprob) <= 1e-9 * Math.max(1, -t.logprob), `${at}: prob ${t.prob} vs logprob ${t.logprob}`);
      // The top list is the k largest logits: when it reaches down to the target, it holds every token above it.
      const above = layer.top.filter((e) => e.logit > t.logit).length;
      if (layer.top.some((e) => e.logit <= t.logit)) assert.equal(t.rank, 1 + above, `${at}: rank of ${t.id} against the top list`);
      else assert.ok(t.rank > above, `${at}: rank ${t.rank} of ${t.id} above the top list`);
      const inTop = layer.top.find((e) => e.id === t.id);
      if (inTop) assert.ok(inTop.prob === t.pieces[0].prob && inTop.logit === t.logit, `${at}: target ${t.id} differs from its top entry`);
      if (t.pieces.length === 1) assert.equal(t.prob, t.pieces[0].prob, `${at}: a single-token target is its piece`);
    }
    assert.equal(layer.targets.map((t) => t.id).join(), r.layers[0].targets.map((t) => t.id).join(), `${at}: targets differ between layers`);
  });
  // first_top1 / first_top10: the earliest block layer after which the target's rank never leaves 1 (10), from the ranks themselves.
  const blocks = r.layers.filter((l) => l.site === 'block');
  r.layers[0].targets.forEach((_, j) => {
    for (const [key, best] of [['first_top1', 1], ['first_top10', 10]] as const) {
      const staying = blocks.map((_, i) => blocks.slice(i).every((l) => l.targets[j].rank <= best));
      const first = staying.indexOf(true);
      const expected = first === -1 ? null : blocks[first].layer;
      for (const l of r.layers) assert.equal(l.targets[j][key], expected, `${what} L${l.layer} target ${j}: ${key}`);
    }
  });
}

/** Tolerances of the lens (float32, onnxruntime) against the float64 reference on the tiny fixtures (measured: at most 5e-5, 5e-5, 8e-6, 3.5e-5). */
export const TOL = { logit: 1e-4, logProb: 2e-4, entropy: 1e-4, kl: 1e-4 };
/** Two logits each within TOL.logit: their order is settled only when they differ by more than this. */
const ORDER_EPS = 2 * TOL.logit;

/**
 * The tokens whose order against a target the tolerance cannot settle, at any layer in either
 * mode, read at `position` of the prompt `ids`; ask the lens for them as targets too, and
 * assertRecordMatchesReference settles those ranks exactly from their lens logits.
 */
export function ambiguousTokens(weights: Gpt2Weights, ids: number[], position: number, targets: readonly number[]): number[] {
  const ref = referenceForward(weights, ids);
  const found = new Set<number>();
  for (const raw of [false, true]) for (const logits of referenceLens(ref, position, raw)) for (const t of targets) for (const i of nearTies(logits, t, ORDER_EPS)) found.add(i);
  for (const t of targets) found.delete(t);
  return [...found].sort((a, b) => a - b);
}

/** The ids of the n largest values, largest first, lower id first among equals (a sort of V ids per layer is slow). */
function largest(x: ArrayLike<number>, n: number): number[] {
  const kept: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (kept.length === n && !(x[i] > x[kept[n - 1]])) continue;
    let j = kept.length;
    while (j > 0 && x[kept[j - 1]] < x[i]) j--;
    kept.splice(j, 0, i);
    if (kept.length > n) kept.pop();
  }
  return kept;
}

/**
 * Asserts every site of a record (sub-layer sites too) against the reference forward pass: top ids
 * (the reference's k best, order settled up to near-ties), logits, probabilities (as logs, so 1e-20
 * is checked as closely as 0.5), entropy, kl_to_final = KL(P_L ‖ P_s), and each target's first-piece
 * prob, logit and rank (1 + tokens strictly above; within the tolerance of it, a range unless settled,
 * and for `exactRanks` it must be), and a several-token target's log P, the sum of its pieces' read
 * teacher-forced at the positions after the prompt.
 */
export function assertRecordMatchesReference(record: LensRecord, weights: Gpt2Weights, what = 'record', exactRanks: readonly number[] = []): void {
  const ids = record.tokens.map((t) => t.id);
  const raw = record.mode === 'raw', sublayers = record.layers.some((l) => l.site === 'attn');
  const lens = referenceLensSites(referenceForward(weights, ids), record.position, raw, sublayers);
  const final = lens[lens.length - 1];
  assert.equal(record.layers.length, lens.length, `${what}: number of sites`);
  const severalTokens = record.layers[0].targets.map((t) => (t.pieces.length > 1 ? referenceTargetLogProb(weights, ids, t.pieces.map((p) => p.id), raw, sublayers) : undefined));
  record.layers.forEach((layer, s) => {
    const at = `${what} ${record.mode} L${layer.layer}${layer.site === 'attn' ? 'a' : ''}`;
    const ref = lens[s];
    const lp = logProbs(ref);
    // The k best of the reference; a token within ORDER_EPS of the k-th may stand in for another.
    const best = largest(ref, layer.top.length);
    const kth = ref[best[best.length - 1]];
    const shown = new Set(layer.top.map((t) => t.id));
    for (const id of best) if (ref[id] > kth + ORDER_EPS) assert.ok(shown.has(id), `${at}: top ids ${[...shown]} miss ${id} (reference ${best})`);
    layer.top.forEach((t, j) => {
      assert.ok(ref[t.id] >= kth - ORDER_EPS, `${at}: top id ${t.id} is not among the reference's best ${best}`);
      if (j > 0) assert.ok(ref[t.id] <= ref[layer.top[j - 1].id] + ORDER_EPS, `${at}: top ids out of the reference's order at ${j}`);
    });
    for (const t of [...layer.top, ...layer.targets.map((x) => ({ id: x.id, logit: x.logit, prob: x.pieces[0].prob }))]) {
      assertClose(t.logit, ref[t.id], TOL.logit, `${at} logit of ${t.id}`);
      assertClose(Math.log(t.prob), lp[t.id], TOL.logProb, `${at} log prob of ${t.id} (prob ${t.prob})`);
    }
    layer.targets.forEach((t, j) => {
      const expected = severalTokens[j];
      if (expected) assertClose(t.logprob, expected[s], TOL.logProb * t.pieces.length, `${at} log P of the ${t.pieces.length} tokens of ${JSON.stringify(t.text)}`);
    });
    // Near-ties are settled by the lens logits the record holds (each checked against the reference above).
    const lensLogit = new Map([...layer.top, ...layer.targets].map((t) => [t.id, t.logit]));
    for (const t of layer.targets) {
      const { min, max } = rankBounds(ref, t.id, ORDER_EPS, (i) => (lensLogit.has(i) ? lensLogit.get(i)! > t.logit : undefined));
      assert.ok(t.rank >= min && t.rank <= max, `${at}: rank of ${t.id} is ${t.rank}, reference ${min === max ? min : `${min}..${max}`}`);
      if (exactRanks.includes(t.id)) assert.equal(min, max, `${at}: the rank of ${t.id} is not settled (ask for ambiguousTokens as targets)`);
    }
    assertClose(layer.entropy, entropy(ref), TOL.entropy, `${at} entropy`);
    assertClose(layer.kl_to_final, kl(final, ref), TOL.kl, `${at} kl_to_final`);
  });
}

const QUOTED = /"(?:[^"\\]|\\.)*"/y;

/** A probability as the human output shows it ("61.2%", "100%", "3e-5", "0") agrees with `p`. */
function probAgrees(shown: string, p: number): boolean {
  if (shown === '0') return p === 0;
  if (shown.endsWith('%')) {
    const v = Number(shown.slice(0, -1)) / 100;
    return Number.isFinite(v) && Math.abs(p - v) <= 0.0005 + 1e-12;
  }
  const v = Number(shown);
  if (!(v > 0) || !/^\de-\d+$/.test(shown)) return false;
  const unit = 10 ** Math.floor(Math.log10(v) + 1e-9);
  return Math.abs(p - v) <= unit / 2 * (1 + 1e-9) && p < 0.001;
}

/**
 * Asserts the human output of a run shows exactly the records of the same run with --json: one
 * block per record, its header (prompt, position, mode), and per layer the top-k tokens and
 * probabilities (topk) or each target's probability or rank (prob, rank).
 */
export function assertHumanAgrees(human: string, records: LensRecord[], command: 'topk' | 'prob' | 'rank'): void {
  const lines = human.split('\n');
  const headers = lines.flatMap((line, i) => (/ · lens (norm|raw) · /.test(line) ? [i] : []));
  assert.equal(headers.length, records.length, `human output has ${headers.length} headers for ${records.length} records:\n${human.slice(0, 2000)}`);
  records.forEach((record, n) => {
    const block = lines.slice(headers[n], headers[n + 1] ?? lines.length);
    const header = block[0];
    QUOTED.lastIndex = 0;
    const quotedPrompt = QUOTED.exec(header)?.[0];
    assert.ok(quotedPrompt, `header without a quoted prompt: ${header}`);
    assert.equal(JSON.parse(quotedPrompt), record.prompt, 'header prompt');
    assert.ok(header.includes(`  position ${record.position} `) && header.endsWith(` · lens ${record.mode} · ${record.model}`), `header ${header}`);
    const rows = block.filter((l) => /^L\d\d+a? /.test(l));
    assert.equal(rows.length, record.layers.length, `${record.prompt}: one row per layer:\n${block.join('\n')}`);
    record.layers.forEach((layer, l) => {
      const row = rows[l];
      const label = row.split(' ')[0];
      assert.equal(label, `L${String(layer.layer).padStart(2, '0')}${layer.site === 'attn' ? 'a' : ''}`, `row label ${label}`);
      let rest = row.slice(label.length);
      if (command === 'topk') {
        for (const t of layer.top) {
          const m = /^ +("(?:[^"\\]|\\.)*") +(\S+)/.exec(rest);
          assert.ok(m, `L${l}: expected ${JSON.stringify(t.token)} in ${JSON.stringify(row)}`);
          assert.equal(JSON.parse(m[1]), t.token, `L${l} token`);
          assert.ok(probAgrees(m[2], t.prob), `L${l}: ${t.token} shown ${m[2]}, prob ${t.prob}`);
          rest = rest.slice(m[0].length);
        }
        assert.equal(rest.trim(), '', `L${l}: more on the line than the top list`);
      } else {
        const cells = rest.trim().split(/\s+/);
        assert.equal(cells.length, layer.targets.length, `L${l}: one cell per target in ${JSON.stringify(row)}`);
        layer.targets.forEach((t, j) => {
          if (command === 'rank') assert.equal(cells[j], String(t.rank), `L${l} rank of ${t.id}`);
          else assert.ok(probAgrees(cells[j], t.prob), `L${l}: P(${t.id}) shown ${cells[j]}, prob ${t.prob}`);
        });
      }
    });
    // The legend names each target: its id, or for several tokens how many and that P is their product.
    // (rank charts the first token of a several-token target, and its legend says which)
    const legend = (t: LensRecord['layers'][number]['targets'][number]) => (t.pieces.length === 1 ? `(id ${t.id})` : command === 'rank' ? `, id ${t.id})` : `(${t.pieces.length} tokens `);
    if (command !== 'topk') for (const t of record.layers[0].targets) assert.ok(block.some((line) => line.includes(legend(t))), `legend names ${legend(t)}`);
  });
}
