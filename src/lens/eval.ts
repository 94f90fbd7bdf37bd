// The tuned-lens paper's comparison of lenses over a text: per layer, the mean over every predicted
// token of KL(final ‖ layer), the cross-entropy of the actual next token and the entropy.
import { siteStats } from './record.js';

/** One layer's means over the predicted tokens, in nats. */
export interface EvalLayer { layer: number; kl: number; crossEntropy: number; entropy: number }

/** Sums per site over the positions added; `means` divides by their count. */
export class LensEvalSums {
  private readonly kl: number[];
  private readonly crossEntropy: number[];
  private readonly entropy: number[];
  count = 0;

  constructor(readonly sites: number) {
    this.kl = new Array<number>(sites).fill(0);
    this.crossEntropy = new Array<number>(sites).fill(0);
    this.entropy = new Array<number>(sites).fill(0);
  }

  /** Adds one position: every site's logits [sites][V] (the last the final layer) and the token that follows. */
  add(siteLogits: ArrayLike<number>[], nextId: number): void {
    if (siteLogits.length !== this.sites) throw new RangeError(`${siteLogits.length} sites, expected ${this.sites}`);
    siteStats(siteLogits, 1).forEach((stats, s) => {
      this.kl[s] += stats.kl;
      this.entropy[s] += stats.entropy;
      this.crossEntropy[s] += stats.logZ - siteLogits[s][nextId];
    });
    this.count++;
  }

  /** The means per site [sites], layer s for site s. Throws when nothing was added. */
  means(): EvalLayer[] {
    if (this.count === 0) throw new RangeError('no positions');
    return this.kl.map((_, s) => ({ layer: s, kl: this.kl[s] / this.count, crossEntropy: this.crossEntropy[s] / this.count, entropy: this.entropy[s] / this.count }));
  }
}

/** The factor from nats per token to bits per byte: tokens / bytes / ln 2 (as the paper reports). */
export function bitsPerByteFactor(tokens: number, bytes: number): number {
  return tokens / bytes / Math.LN2;
}
