// lens attribute: the direct logit attribution of a target's final logit (or of a difference of
// two) to the embeddings, each block's attention and MLP, and the biases, at each position read.
import { usageError, UserError } from '../errors.js';
import { attributeWrites, beforeSoftcap, componentWrites, partsSum, subtractParts, withHeadWrites, type AttributionRecord } from '../lens/attribution.js';
import type { IndexSpec } from '../lens/spec.js';
import type { Dtype } from '../model/paths.js';
import type { LensModel } from '../model/runtime.js';
import { renderAttribution } from '../render/attribution.js';
import { palette } from '../render/style.js';
import { encodePrompt, resolvePositions, resolveTarget, type TargetSpec } from './analyze.js';

export interface AttributeOptions {
  model: string;
  dtype: Dtype;
  revision?: string;
  positions: IndexSpec;
  offline: boolean;
  /** One target (its logit) or two (the first's logit minus the second's); none: the final layer's top-1. */
  targets: TargetSpec[];
  /** Also one part per attention head (and each output projection's bias). */
  heads?: boolean;
  env: NodeJS.ProcessEnv;
  progress?: (done: number, total: number | undefined, file: string) => void;
  onPrepare?: () => void;
  batch?: boolean;
}

/** What one attribution reads of a loaded model: the per-prompt part of AttributeOptions. */
export type AttributeRequest = Pick<AttributeOptions, 'positions' | 'targets' | 'heads'>;

/** Each prompt's records (one per position) and their human rendering. Throws UserError on bad input or a model it cannot read. */
export async function* attribute(prompts: AsyncIterable<string> | Iterable<string>, options: AttributeOptions, view: { color: boolean }): AsyncGenerator<{ records: AttributionRecord[]; text: string }> {
  checkTargets(options.targets);
  const { loadLensModel } = await import('../model/runtime.js');
  const model = await loadLensModel(options.model, options);
  try {
    const attributeOne = planAttribution(model, options);
    const c = palette(view.color);
    for await (const prompt of prompts) {
      const { records, defaultTarget } = await attributeOne(prompt);
      const text = records.map((r) => renderAttribution(r, { c, color: view.color, defaultTarget })).join('\n\n');
      yield { records, text };
    }
  } finally {
    await model.dispose();
  }
}

function checkTargets(targets: TargetSpec[]): void {
  if (targets.length > 2) throw usageError(`${targets.length} targets given; attribute explains one logit or the difference of two`, 'give --target A, or --target A --target B');
}

/**
 * Checks `request` against a loaded model and returns the function that attributes one prompt: its
 * records, one per position read [positions], and whether the target was the default (the final
 * top-1). `checkpoint` runs before each forward. The one path of `lens attribute` and the library's
 * attribute(). Throws UserError on bad input or a model whose head it cannot read, here or from the function.
 */
export function planAttribution(model: LensModel, request: AttributeRequest, checkpoint: () => void = () => {}): (prompt: string) => Promise<{ records: AttributionRecord[]; defaultTarget: boolean }> {
  checkTargets(request.targets);
  if (!model.attributable) {
    const why = model.attributionRefused ?? 'a head lens cannot read as a matrix, or ops after the head other than a bias, a scale or a softcap';
    throw new UserError(`attribute cannot read the final norm and head of ${model.id} as stored weights: ${why}`, 'try --dtype fp32');
  }
  if (request.heads && (!model.headSites || !model.attentionHeads)) {
    const why = model.headsRefused ?? 'lens finds no output projection by stored weights after each attention (or the config does not give the number of heads)';
    throw new UserError(`--heads on ${model.id}: ${why}`, 'leave out --heads (or try --dtype fp32)');
  }
  const given = request.targets.map((spec) => resolveTarget(spec, model)).map((t) => ({ id: t.ids[0], text: model.tokenText(t.ids[0]) }));
  const V = model.vocabSize;
  return async (prompt) => {
    const ids = encodePrompt(prompt, model);
    const positions = resolvePositions(request.positions, ids.length);
    const P = positions.length;
    const sublayers = model.midSites;
    let targetIds = given.map((t) => t.id);
    let defaults: number[] | undefined;
    if (given.length === 0) {
      // The final layer's top-1 at each position: a first run finds it, the second reads its head row.
      checkpoint();
      const first = await model.run(ids, positions, 'norm', { sublayers });
      const last = first.sites.length - 1;
      defaults = positions.map((_, p) => argmax(first.logits.subarray((last * P + p) * V, (last * P + p + 1) * V)));
      targetIds = [...new Set(defaults)];
    }
    checkpoint();
    const run = await model.run(ids, positions, 'norm', { sublayers, attribution: { targets: targetIds, heads: request.heads } });
    const head = run.attribution!;
    const d = head.gain.length;
    const S = run.sites.length;
    const tokens = ids.map((id) => ({ id, text: model.tokenText(id) }));
    const records = positions.map((position, p): AttributionRecord => {
      const blockWrites = componentWrites(run.hidden, run.sites, P, p, d, head.branches);
      const writes = head.heads ? withHeadWrites(blockWrites, head.heads, P, p, d) : blockWrites;
      const finalResidual = run.hidden.subarray(((S - 1) * P + p) * d, ((S - 1) * P + p + 1) * d);
      const ownLogit = (id: number) => beforeSoftcap(run.logits[((S - 1) * P + p) * V + id], head.softcap);
      const partsFor = (id: number) => attributeWrites(writes, finalResidual, head, targetIds.indexOf(id));
      const target = defaults ? defaults[p] : given[0].id;
      const versus = defaults ? undefined : given[1]?.id;
      const parts = versus === undefined ? partsFor(target) : subtractParts(partsFor(target), partsFor(versus));
      const value = ownLogit(target) - (versus === undefined ? 0 : ownLogit(versus));
      return {
        model: model.id, prompt, tokens, position,
        target: { id: target, text: model.tokenText(target) },
        versus: versus === undefined ? null : { id: versus, text: model.tokenText(versus) },
        value,
        ...(head.softcap ? { softcap: head.softcap } : {}),
        ...(head.roundsInput ? { quantized_head: { parts_sum: partsSum(parts), difference: value - partsSum(parts) } } : {}),
        parts,
      };
    });
    return { records, defaultTarget: defaults !== undefined };
  };
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
