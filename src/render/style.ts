// Colour decisions in one place: colours only on a terminal, never with NO_COLOR or --json.
import { Chalk, type ChalkInstance } from 'chalk';

/** Whether output to `stream` should be coloured (a TTY, NO_COLOR unset or empty, FORCE_COLOR aside). */
export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false') return true;
  return stream.isTTY === true;
}

/** A chalk instance that colours only when `enabled`. */
export function palette(enabled: boolean): ChalkInstance {
  return new Chalk({ level: enabled ? 1 : 0 });
}

/** ANSI colours for chart series, in order (basic 16-colour codes, understood everywhere). */
export const SERIES_COLORS = ['\x1b[36m', '\x1b[33m', '\x1b[35m', '\x1b[32m', '\x1b[31m', '\x1b[34m'];
export const RESET = '\x1b[0m';
