// What each analysis command reads when not told otherwise, shared by the CLI and the library so
// that `lens.run(prompt, { command })` and `lens <command> --json prompt` make the same records.
import { usageError } from '../errors.js';

export type CommandName = 'topk' | 'prob' | 'rank' | 'diff' | 'heatmap';

/** A command's defaults: `position` (a --position spec), the targets the lens surfaces when none are given, how many targets it takes. */
export interface CommandRun { position: string; lensTargets?: 'top1' | 'top2'; targetCount?: number }

export const COMMAND_RUNS: Readonly<Record<CommandName, CommandRun>> = {
  topk: { position: '-1' },
  prob: { position: '-1', lensTargets: 'top1' },
  rank: { position: '-1', lensTargets: 'top1' },
  diff: { position: '-1', lensTargets: 'top2', targetCount: 2 },
  heatmap: { position: ':' },
};

/** Throws UserError when a command that compares exactly `expected` targets is given another number (none is fine). */
export function checkTargetCount(given: number, expected: number | undefined): void {
  if (expected !== undefined && given > 0 && given !== expected) {
    throw usageError(`${given} target${given === 1 ? '' : 's'} given; this command compares exactly ${expected}`, 'give --target A --target B, or none');
  }
}
