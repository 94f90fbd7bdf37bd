// Figures to keep (--svg, --html): collected while the prompts run, written once all succeeded,
// only at the paths the user gave (never into a model directory or the cache).
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, relative, resolve } from 'node:path';
import { UserError, usageError } from '../errors.js';
import type { AttributionRecord } from '../lens/attribution.js';
import type { LensRecord } from '../lens/record.js';
import type { HeatBy } from '../render/grid.js';
import { renderHtml, type HtmlView } from '../render/html.js';
import { renderAttributionSvg, renderChartSvg, renderHeatmapSvg, svgDocument } from '../render/svg.js';

/** The commands that draw figures; all of them make HTML, all but topk SVG. */
export type FigureCommand = 'topk' | 'prob' | 'rank' | 'diff' | 'heatmap' | 'attribute';
export const SVG_COMMANDS: readonly FigureCommand[] = ['prob', 'rank', 'diff', 'heatmap', 'attribute'];

export interface FigureOptions {
  svg?: string;
  html?: string;
  /** The heatmap's colour scale. */
  by?: HeatBy;
}

/** `file` with `-n` before its extension: fig.svg → fig-2.svg, fig → fig-2. */
export function numberedPath(file: string, n: number): string {
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}-${n}${ext}`;
}

function inside(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Checks an output path before any work: its directory exists, and it is not inside any of
 * `forbidden` (the model directory, the cache). Throws UserError (usage) naming the flag.
 */
export function checkOutputPath(flag: string, file: string, forbidden: string[]): void {
  if (file.length === 0) throw usageError(`${flag} needs a file name`);
  const dir = dirname(resolve(file));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw usageError(`${flag} ${file}: directory ${dirname(file)} does not exist`);
  if (existsSync(file) && statSync(file).isDirectory()) throw usageError(`${flag} ${file} is a directory`, 'give a file name');
  for (const place of forbidden) {
    if (inside(file, place)) throw usageError(`${flag} ${file} is inside ${place}`, 'lens does not write into model directories or its cache');
  }
}

/** Writes one figure at a path checkOutputPath accepted. Throws UserError when it cannot be written. */
export function writeFigure(file: string, text: string): void {
  try {
    writeFileSync(file, text);
  } catch (error) {
    throw new UserError(`cannot write ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Collects each prompt's records and writes the figures at the end. */
export class FigureWriter {
  private readonly svgs: string[] = [];
  private readonly views: HtmlView[] = [];

  constructor(private readonly command: FigureCommand, private readonly options: FigureOptions) {
    if (options.svg !== undefined && !SVG_COMMANDS.includes(command)) throw usageError(`--svg is not available for ${command}`, `use --html`);
  }

  /** Whether anything is to be written. */
  get active(): boolean {
    return this.options.svg !== undefined || this.options.html !== undefined;
  }

  /** Adds one prompt's records (one per position, the layers already thinned for display). */
  add(records: LensRecord[]): void {
    if (!this.active || records.length === 0) return;
    const by = this.options.by ?? 'prob';
    const command = this.command;
    if (command === 'heatmap') {
      if (this.options.svg !== undefined) this.svgs.push(svgDocument(renderHeatmapSvg(records, by)));
      this.views.push({ kind: 'heatmap', records, by });
      return;
    }
    if (command === 'attribute') throw new RangeError('attribute records go through addAttribution');
    for (const record of records) {
      if (command !== 'topk' && this.options.svg !== undefined) this.svgs.push(svgDocument(renderChartSvg(record, command)));
      this.views.push(command === 'topk' ? { kind: 'topk', record } : { kind: command, record });
    }
  }

  /** Adds one prompt's attribution records (one figure per position). */
  addAttribution(records: AttributionRecord[]): void {
    for (const record of records) {
      if (this.options.svg !== undefined) this.svgs.push(svgDocument(renderAttributionSvg(record)));
      if (this.options.html !== undefined) this.views.push({ kind: 'attribute', record });
    }
  }

  /** Writes the files; returns their paths in order. Throws UserError when a file cannot be written. */
  finish(): string[] {
    const written: string[] = [];
    const write = (file: string, text: string) => {
      writeFigure(file, text);
      written.push(file);
    };
    const { svg, html } = this.options;
    if (svg !== undefined) {
      this.svgs.forEach((text, i) => write(this.svgs.length === 1 ? svg : numberedPath(svg, i + 1), text));
    }
    if (html !== undefined) write(html, renderHtml(this.command, this.views));
    return written;
  }
}
