import type { ChalkInstance } from 'chalk';
import type { LensRecord } from '../lens/record.js';
import { quoteToken } from './tokens.js';

/** One line naming the prompt, the position read, the mode and the model. */
export function renderHeader(record: LensRecord, c: ChalkInstance): string {
  const at = record.tokens[record.position];
  const where = `position ${record.position} ${at ? quoteToken(at.text) : ''}`.trimEnd();
  return `${c.bold(quoteToken(record.prompt))}  ${c.dim(`${where} · lens ${record.mode} · ${record.model}`)}`;
}

