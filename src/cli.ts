// The lens command line: commander wiring, option checks, and the one place that prints
// errors and sets exit codes. Heavy modules load only when a command runs.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { UserError, usageError } from './errors.js';
import type { AnalyzeOptions, Command as LensCommand, TargetSpec } from './commands/analyze.js';
import type { FigureCommand } from './commands/figures.js';
import type { LensRecord } from './lens/record.js';
import { parseIndexSpec, type IndexSpec } from './lens/spec.js';
import { checkTargetCount, COMMAND_RUNS } from './commands/runs.js';
import { cacheRoot, DTYPE_SUFFIX, offlineFromEnv, type Dtype } from './model/paths.js';
import { HEAT_BY, type HeatBy } from './render/grid.js';
import { formatDownloadProgress } from './render/progress.js';
import { colorEnabled } from './render/style.js';

const VERSION = '0.1.0';
const DEFAULT_MODEL = 'Xenova/gpt2';
// The notebook's prompts and target: the defaults of the commands.
const NOTEBOOK_PROMPTS = ['Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is'];
const CHART_PROMPTS = ['The most famous sports in USA is'];
const CHART_TARGET = ' football';
const DIFF_TARGETS = [' football', ' baseball'];

interface RawOptions {
  model: string; revision: string; dtype: Dtype; raw?: boolean; position: IndexSpec; layers?: IndexSpec; sublayers?: boolean; topK: number; file?: string; json?: boolean;
  offline?: boolean; verbose?: boolean; target: string[]; targetId: number[]; gold?: string[]; goldId?: number[];
  svg?: string; html?: string; by?: HeatBy; lens: 'logit' | 'tuned'; tunedLens?: string;
}

/** What a command does without targets: the seed's targets when no prompt is given, else what the lens surfaces. */
interface CommandDefaults {
  /** The command, for the figures it writes. */
  name: FigureCommand;
  prompts: string[];
  /** `--position` when not given. */
  position?: string;
  seedTargets?: string[];
  lensTargets?: 'top1' | 'top2';
  /** How many targets the command takes, when it is fixed. */
  targetCount?: number;
}

function indexSpec(flag: string, step: boolean) {
  return (value: string): IndexSpec => {
    try {
      return parseIndexSpec(value, { step });
    } catch (error) {
      throw new InvalidArgumentError(`${flag}: ${(error as Error).message}`);
    }
  };
}

function integer(min: number, what: string) {
  return (value: string): number => {
    if (!/^[+-]?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${what} must be a whole number.`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${what} must be at least ${min}.`);
    return n;
  };
}

function collect<T>(parse: (v: string) => T) {
  return (value: string, previous: T[] = []): T[] => [...previous, parse(value)];
}

/** The options naming the model: which repository or directory, which revision, which weights. */
function addModelSource(cmd: Command): Command {
  return cmd
    .option('-m, --model <id|dir>', 'hub repo id or local model directory', DEFAULT_MODEL)
    .option('--revision <rev>', 'hub revision of a repo id: branch, tag or commit', 'main')
    .addOption(new Option('--dtype <dtype>', 'weights variant').choices(Object.keys(DTYPE_SUFFIX)).default('fp32'));
}

/** The options naming the model and the positions to read, shared by every command that runs the model. */
function addModelOptions(cmd: Command, position = '-1'): Command {
  return addModelSource(cmd)
    .addOption(new Option('--position <spec>', 'token positions to read: N (negative from the end), a list 0,3,-1, a slice 2:5, -4: or :')
      .argParser(indexSpec('--position', false)).default(parseIndexSpec(position, { step: false }), position));
}

function addCommonOptions(cmd: Command, position = '-1'): Command {
  return addModelOptions(cmd, position)
    .option('--raw', "the notebook's lens: hidden states as Hugging Face returns them, without the final norm")
    .option('--layers <spec>', 'layers to show in the human views (like --position, plus steps ::2); the last is always shown', indexSpec('--layers', true))
    .option('--sublayers', 'also read the residual after each block\'s attention, before its MLP')
    .addOption(new Option('--lens <kind>', 'logit: the final norm and head on each residual; tuned: a tuned lens\'s translators first').choices(['logit', 'tuned']).default('logit'))
    .option('--tuned-lens <dir|name>', 'the tuned lens: a directory with config.json and params.pt, or a lens name in the tuned-lens Space (implies --lens tuned)')
    .option('-k, --top-k <n>', 'tokens per layer in the top list', integer(1, '-k'), 5)
    .option('--file <path|->', 'read prompts from a file, one per line (- for stdin)')
    .option('--target <text>', 'text to follow (several tokens: the product of their probabilities); repeatable', collect(String), [])
    .option('--target-id <n>', 'token id to follow; repeatable', collect(integer(0, '--target-id')), [])
    .option('--json', 'one JSON record per prompt and position per line on stdout')
    .option('--html <file>', "also write every prompt's views as one self-contained HTML page")
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors');
}

async function* linesOf(file: string): AsyncGenerator<string> {
  let lines: AsyncIterable<string> | string[];
  if (file === '-') {
    lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  } else {
    let text: string;
    try {
      text = new TextDecoder('utf-8').decode(readFileSync(file));
    } catch (error) {
      throw usageError(`cannot read --file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    lines = text.split(/\r?\n/);
  }
  for await (const line of lines) {
    const prompt = line.replace(/\r$/, '');
    if (prompt.length > 0) yield prompt; // blank lines separate, they are not prompts
  }
}

async function* promptSource(positional: string[], file: string | undefined, defaults: string[]): AsyncGenerator<string> {
  yield* positional;
  if (file !== undefined) {
    let any = positional.length > 0;
    for await (const line of linesOf(file)) { any = true; yield line; }
    if (!any) throw usageError(`--file ${file} has no prompts`);
  } else if (positional.length === 0) {
    yield* defaults;
  }
}

/** Whether --lens was given on the command line (not its default). */
const lensGiven = (cmd: Command) => cmd.getOptionValueSource('lens') === 'cli';

/** The lens asked for: --tuned-lens implies --lens tuned, and contradicts an explicit --lens logit. Throws UserError. */
function chosenLens(opts: RawOptions, explicitLens: boolean): 'logit' | 'tuned' {
  if (opts.tunedLens === undefined) return opts.lens;
  if (explicitLens && opts.lens === 'logit') throw usageError('--tuned-lens goes with --lens tuned, not --lens logit');
  return 'tuned';
}

async function execute(load: () => Promise<LensCommand>, positional: string[], opts: RawOptions, defaults: CommandDefaults, lensGiven: boolean): Promise<void> {
  const env = process.env;
  const color = !opts.json && colorEnabled(process.stdout, env);
  const targets: TargetSpec[] = [
    ...opts.target.map((text) => ({ text })), ...(opts.gold ?? []).map((text) => ({ text })),
    ...opts.targetId.map((id) => ({ id })), ...(opts.goldId ?? []).map((id) => ({ id })),
  ];
  checkTargetCount(targets.length, defaults.targetCount);
  const promptGiven = positional.length > 0 || opts.file !== undefined;
  let targetOrigin: 'given' | 'seed' = 'given';
  if (targets.length === 0 && !promptGiven && defaults.seedTargets) {
    targets.push(...defaults.seedTargets.map((text) => ({ text })));
    targetOrigin = 'seed';
  }
  const warnings: string[] = [];
  const showProgress = process.stderr.isTTY === true;
  const options: AnalyzeOptions = {
    model: opts.model, revision: opts.revision, dtype: opts.dtype, raw: !!opts.raw, positions: opts.position, k: opts.topK, sublayers: !!opts.sublayers,
    lens: chosenLens(opts, lensGiven), tunedLens: opts.tunedLens,
    offline: !!opts.offline || offlineFromEnv(env), targets, targetOrigin, lensTargets: defaults.lensTargets, env, batch: opts.file !== undefined,
    // Warnings are held until the run succeeds, so that a failed run prints exactly one line.
    warn: (message) => warnings.push(message),
    progress: showProgress ? progressBar() : undefined,
    onPrepare: () => { if (showProgress) process.stderr.write('lens: preparing the model for the lens (once per model)…\n'); },
  };
  const figures = await figureWriter(defaults.name, opts, env);
  const command = await load();
  let first = true;
  for await (const { result, text } of command(promptSource(positional, opts.file, defaults.prompts), options, { color, layers: opts.layers })) {
    if (opts.json) { for (const record of result.records) process.stdout.write(`${JSON.stringify(record)}\n`); }
    else { process.stdout.write(`${first ? '' : '\n'}${text}\n`); first = false; }
    figures?.add(result.records);
  }
  for (const message of warnings) process.stderr.write(`lens: warning: ${message}\n`);
  for (const file of figures?.finish() ?? []) process.stderr.write(`lens: wrote ${file}\n`);
}

/** Checks --svg and --html before the model loads: never into a local model directory or the cache. Throws UserError. */
function checkFigurePaths(opts: RawOptions, env: NodeJS.ProcessEnv, check: (flag: string, file: string, forbidden: string[]) => void): void {
  const forbidden = [cacheRoot(env), ...(existsSync(opts.model) && statSync(opts.model).isDirectory() ? [opts.model] : [])];
  if (opts.svg !== undefined) check('--svg', opts.svg, forbidden);
  if (opts.html !== undefined) check('--html', opts.html, forbidden);
}

/**
 * The writer of --svg/--html, its paths checked before the model loads (never into a local model
 * directory or the cache); figures show the layers --layers keeps. Undefined when neither is given.
 */
async function figureWriter(name: FigureCommand, opts: RawOptions, env: NodeJS.ProcessEnv) {
  if (opts.svg === undefined && opts.html === undefined) return undefined;
  const [{ FigureWriter, checkOutputPath }, { keptLayers }, { visibleLayers }] = await Promise.all([
    import('./commands/figures.js'), import('./commands/analyze.js'), import('./render/view.js')]);
  checkFigurePaths(opts, env, checkOutputPath);
  const writer = new FigureWriter(name, { svg: opts.svg, html: opts.html, by: opts.by });
  return {
    add(records: LensRecord[]) {
      const layers = keptLayers(opts.layers, records[0].layers.at(-1)!.layer);
      writer.add(records.map((r) => ({ ...r, layers: visibleLayers(r.layers, { layers }) })));
    },
    finish: () => writer.finish(),
  };
}

/** The writer of attribute's --svg/--html, its paths checked like figureWriter's; undefined when neither is given. */
async function attributionFigures(opts: RawOptions, env: NodeJS.ProcessEnv) {
  if (opts.svg === undefined && opts.html === undefined) return undefined;
  const { FigureWriter, checkOutputPath } = await import('./commands/figures.js');
  checkFigurePaths(opts, env, checkOutputPath);
  return new FigureWriter('attribute', { svg: opts.svg, html: opts.html });
}

/** The option --svg, on the commands that draw a figure. */
function withSvg(cmd: Command): Command {
  return cmd.option('--svg <file>', 'also write each figure as a standalone SVG file (several: FILE-1, FILE-2, …)');
}

/** Terminal width for layouts that wrap: the terminal's columns, 100 when stdout is not a terminal. */
function terminalWidth(): number {
  return process.stdout.isTTY ? process.stdout.columns || 100 : 100;
}

/** The download progress line on a terminal: redrawn at most every 100 ms, the rate over this run's bytes of the file. */
function progressBar() {
  let last = 0;
  let current: { file: string; startedAt: number; startBytes: number } | undefined;
  return (done: number, total: number | undefined, file: string, overall?: { done: number; total?: number }) => {
    const now = Date.now();
    if (current?.file !== file) current = { file, startedAt: now, startBytes: done };
    if (now - last < 100 && done !== total) return;
    last = now;
    const seconds = (now - current.startedAt) / 1000;
    const rate = seconds >= 0.5 ? (done - current.startBytes) / seconds : undefined;
    process.stderr.write(`\r\x1b[K${formatDownloadProgress({ file, done, total, rate, overall })}${done === total ? '\n' : ''}`);
  };
}

/** Commander's own errors as one `lens: …` line. */
const oneLineErrors = { outputError: (str: string, write: (s: string) => void) => write(`lens: ${str.trim().replace(/^error: /, '').split('\n')[0]}\n`) };

/** Builds the program; each command's action runs the lens and prints. */
export function buildProgram(): Command {
  const program = new Command('lens')
    .description('Logit lens for decoder language models (GPT-2, Llama, Qwen2, Gemma, GPT-NeoX, …): what each layer would predict')
    .version(VERSION)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput(oneLineErrors);

  addCommonOptions(program.command('topk').argument('[prompts...]', 'prompts (default: the three notebook prompts)')
    .description('top-k tokens of every layer'))
    .action((prompts: string[], opts: RawOptions, cmd: Command) => execute(async () => (await import('./commands/topk.js')).topk, prompts, opts, { name: 'topk', prompts: NOTEBOOK_PROMPTS }, lensGiven(cmd)));

  const chartDefaults = { prompts: CHART_PROMPTS, seedTargets: [CHART_TARGET] };
  withSvg(addCommonOptions(program.command('prob').argument('[prompts...]', `prompts (default: ${JSON.stringify(CHART_PROMPTS[0])})`)
    .description(`P(target) per layer as a chart (default: the lens's own top-1 tokens; ${JSON.stringify(CHART_TARGET)} without a prompt)`)))
    .action((prompts: string[], opts: RawOptions, cmd: Command) => execute(async () => (await import('./commands/prob.js')).prob, prompts, opts, { ...chartDefaults, ...COMMAND_RUNS.prob, name: 'prob' }, lensGiven(cmd)));

  withSvg(addCommonOptions(program.command('rank').argument('[prompts...]', `prompts (default: ${JSON.stringify(CHART_PROMPTS[0])})`)
    .description(`rank of the gold token per layer as a chart (default: the lens's own top-1 tokens; ${JSON.stringify(CHART_TARGET)} without a prompt)`))
    .option('--gold <text>', 'gold token text (same as --target); repeatable', collect(String), [])
    .option('--gold-id <n>', 'gold token id (same as --target-id); repeatable', collect(integer(0, '--gold-id')), []))
    .action((prompts: string[], opts: RawOptions, cmd: Command) => execute(async () => (await import('./commands/rank.js')).rank, prompts, opts, { ...chartDefaults, ...COMMAND_RUNS.rank, name: 'rank' }, lensGiven(cmd)));

  withSvg(addCommonOptions(program.command('diff').argument('[prompts...]', `prompts (default: ${JSON.stringify(CHART_PROMPTS[0])})`)
    .description(`logit(A) − logit(B) per layer for exactly two targets (default: the final layer's top 2; ${DIFF_TARGETS.map((t) => JSON.stringify(t)).join(' and ')} without a prompt)`)))
    .action((prompts: string[], opts: RawOptions, cmd: Command) => execute(async () => (await import('./commands/diff.js')).diff, prompts, opts, { ...COMMAND_RUNS.diff, name: 'diff', prompts: CHART_PROMPTS, seedTargets: DIFF_TARGETS }, lensGiven(cmd)));

  withSvg(addCommonOptions(program.command('heatmap').argument('[prompts...]', `prompts (default: ${JSON.stringify(CHART_PROMPTS[0])})`)
    .description('top-1 token of every layer at every position, as a coloured grid (default --position :)'), COMMAND_RUNS.heatmap.position))
    .addOption(new Option('--by <what>', 'what the colour shows: prob (the top-1 probability), entropy, or kl (KL to the final layer)').choices(HEAT_BY).default('prob'))
    .action((prompts: string[], opts: RawOptions, cmd: Command) => execute(async () => (await import('./commands/heatmap.js')).heatmapCommand({ by: opts.by ?? 'prob', width: terminalWidth() }), prompts, opts, { name: 'heatmap', prompts: CHART_PROMPTS }, lensGiven(cmd)));

  addModelOptions(program.command('attribute').argument('[prompts...]', `prompts (default: ${JSON.stringify(CHART_PROMPTS[0])})`)
    .description("direct logit attribution: how much the embeddings, each layer's attention and MLP, and the biases add to a target's final logit (or to logit(A) − logit(B))"))
    .option('--file <path|->', 'read prompts from a file, one per line (- for stdin)')
    .option('--target <text>', "the target (its first token); twice: logit of the first minus the second's (default: the final layer's top-1)", collect(String), [])
    .option('--target-id <n>', 'target token id; repeatable', collect(integer(0, '--target-id')), [])
    .option('--heads', 'also one part per attention head, and each attention output projection\'s bias')
    .option('--svg <file>', 'also write each position\'s bar chart (and head grid) as a standalone SVG file (several: FILE-1, FILE-2, …)')
    .option('--html <file>', "also write every prompt's charts as one self-contained HTML page")
    .option('--json', 'one JSON record per prompt and position per line on stdout')
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors')
    .action(async (positional: string[], opts: RawOptions & { heads?: boolean }) => {
      const env = process.env;
      const showProgress = process.stderr.isTTY === true;
      const targets: TargetSpec[] = [...opts.target.map((text) => ({ text })), ...opts.targetId.map((id) => ({ id }))];
      const figures = await attributionFigures(opts, env);
      const { attribute } = await import('./commands/attribute.js');
      const color = !opts.json && colorEnabled(process.stdout, env);
      let first = true;
      for await (const { records, text } of attribute(promptSource(positional, opts.file, CHART_PROMPTS), {
        model: opts.model, revision: opts.revision, dtype: opts.dtype, positions: opts.position, offline: !!opts.offline || offlineFromEnv(env),
        targets, heads: !!opts.heads, env, batch: opts.file !== undefined, progress: showProgress ? progressBar() : undefined,
        onPrepare: () => { if (showProgress) process.stderr.write('lens: preparing the model for the lens (once per model)…\n'); },
      }, { color })) {
        if (opts.json) { for (const record of records) process.stdout.write(`${JSON.stringify(record)}\n`); }
        else { process.stdout.write(`${first ? '' : '\n'}${text}\n`); first = false; }
        figures?.addAttribution(records);
      }
      for (const file of figures?.finish() ?? []) process.stderr.write(`lens: wrote ${file}\n`);
    });

  program.command('serve')
    .description('serve a page and a JSON API (POST /api/run) to explore prompts in the browser, the models loaded once')
    .option('-m, --model <id|dir>', `model to load; repeatable, the first is the default (default: ${DEFAULT_MODEL})`, collect(String), [])
    .option('--revision <rev>', 'hub revision of a repo id: branch, tag or commit', 'main')
    .addOption(new Option('--dtype <dtype>', 'weights variant').choices(Object.keys(DTYPE_SUFFIX)).default('fp32'))
    .option('--host <address>', 'address to listen on; other than 127.0.0.1 exposes the models to the network', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: a free one)', integer(0, '--port'), 8080)
    .option('--queue <n>', 'requests that may wait behind the running one before more are refused (503)', integer(0, '--queue'), 16)
    .addOption(new Option('--lens <lens>', 'tuned: also load --tuned-lens (without it, the Space\'s lens of each model) for every model (the page opens on it and toggles to the logit lens); default: tuned with --tuned-lens, else logit').choices(['logit', 'tuned']))
    .option('--tuned-lens <dir|name>', 'the tuned lens for --lens tuned: a directory, or a lens name in the tuned-lens Space')
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors')
    .action(async (opts: { model: string[]; revision: string; dtype: Dtype; host: string; port: number; queue: number; offline?: boolean; lens?: 'logit' | 'tuned'; tunedLens?: string }) => {
      if (opts.port > 65535) throw usageError(`--port ${opts.port} is not a port (0..65535)`);
      if (opts.lens === 'logit' && opts.tunedLens !== undefined) throw usageError('--tuned-lens goes with --lens tuned', 'leave out --lens logit: the page toggles between the lenses');
      const env = process.env;
      const [{ serve, isLoopback }, { LensError }] = await Promise.all([import('./server/server.js'), import('./index.js')]);
      if (!isLoopback(opts.host)) process.stderr.write(`lens: warning: listening on ${opts.host}: anyone who can reach this address can run the models\n`);
      const models = opts.model.length > 0 ? opts.model : [DEFAULT_MODEL];
      const showProgress = process.stderr.isTTY === true;
      const bar = showProgress ? progressBar() : undefined;
      let served;
      try {
        served = await serve({
          models, dtype: opts.dtype, revision: opts.revision, offline: !!opts.offline || offlineFromEnv(env), env, host: opts.host, port: opts.port, queue: opts.queue, batch: true,
          lens: opts.lens ?? (opts.tunedLens !== undefined ? 'tuned' : 'logit'), tunedLens: opts.tunedLens,
          onProgress: (p) => { if (p.phase === 'download') bar?.(p.done, p.total, p.file); else if (showProgress) process.stderr.write('lens: preparing the model for the lens (once per model)…\n'); },
        });
      } catch (error) {
        if (error instanceof LensError && error.code !== 'E_INTERNAL') throw new UserError(error.message, undefined, error.code === 'E_USAGE' ? 2 : 1);
        throw error;
      }
      process.stderr.write(`lens: serving ${served.origin}/\n`);
      // Serves until interrupted (SIGINT exits 130) or terminated.
      await new Promise<void>((resolve) => process.once('SIGTERM', () => { void served.close().then(resolve); }));
    });

  addModelSource(program.command('eval')
    .description('the logit lens (and a tuned lens) over a text: per layer the mean KL to the final layer, cross-entropy of the next token, and entropy'))
    .requiredOption('--data <file>', 'the text to read')
    .option('--tuned-lens <dir|name>', 'also evaluate this tuned lens: a directory, or a lens name in the tuned-lens Space')
    .option('--max-tokens <n>', 'read at most this many tokens of the text', integer(2, '--max-tokens'))
    .option('--json', 'one JSON object on stdout')
    .option('--svg <file>', 'also write the chart (KL, cross-entropy, entropy per layer) as a standalone SVG file')
    .option('--html <file>', 'also write the chart and the table as one self-contained HTML page')
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors')
    .action(async (opts: { model: string; revision: string; dtype: Dtype; data: string; tunedLens?: string; maxTokens?: number; json?: boolean; svg?: string; html?: string; offline?: boolean }) => {
      const env = process.env;
      const { evaluate, renderEval } = await import('./commands/eval.js');
      const { checkOutputPath, writeFigure } = await import('./commands/figures.js');
      const forbidden = [cacheRoot(env), ...(existsSync(opts.model) && statSync(opts.model).isDirectory() ? [opts.model] : [])];
      if (opts.svg !== undefined) checkOutputPath('--svg', opts.svg, forbidden);
      if (opts.html !== undefined) checkOutputPath('--html', opts.html, forbidden);
      const tty = process.stderr.isTTY === true;
      const started = Date.now();
      const result = await evaluate({
        ...opts, offline: !!opts.offline || offlineFromEnv(env), env, progress: tty ? progressBar() : undefined,
        onProgress: tty ? (done, total) => {
          const rate = done / Math.max(1e-3, (Date.now() - started) / 1000);
          process.stderr.write(`\r\x1b[Keval: ${done}/${total} tokens, ${rate.toFixed(1)} tokens/s, ETA ${Math.round((total - done) / rate)} s${done === total ? '\n' : ''}`);
        } : undefined,
      });
      process.stdout.write(`${opts.json ? JSON.stringify(result) : renderEval(result)}\n`);
      if (opts.svg !== undefined || opts.html !== undefined) {
        const { renderEvalHtml, renderEvalSvg } = await import('./render/eval-chart.js');
        const { svgDocument } = await import('./render/svg.js');
        if (opts.svg !== undefined) writeFigure(opts.svg, svgDocument(renderEvalSvg(result)));
        if (opts.html !== undefined) writeFigure(opts.html, renderEvalHtml(result));
      }
    });

  addModelSource(program.command('tune')
    .description('train a tuned lens on a text (CPU) and write it as tuned-lens does: config.json and params.pt'))
    .requiredOption('--data <file>', 'the training text')
    .requiredOption('--out <dir>', 'the lens directory to write (new or empty; with --resume, the run to continue)')
    .option('--steps <n>', 'optimizer steps (default 250)', integer(1, '--steps'))
    .option('--tokens-per-step <n>', 'tokens per step (default 4096)', integer(1, '--tokens-per-step'))
    .option('--seq-len <n>', 'tokens per sequence (default 512, at most the model\'s context)', integer(2, '--seq-len'))
    .option('--resume', 'continue the run in --out from its last checkpoint')
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors')
    .action(async (opts: { model: string; revision: string; dtype: Dtype; data: string; out: string; steps?: number; tokensPerStep?: number; seqLen?: number; resume?: boolean; offline?: boolean }) => {
      const env = process.env;
      const { tune, renderTune } = await import('./commands/tune.js');
      const { formatDuration } = await import('./render/progress.js');
      const tty = process.stderr.isTTY === true;
      const result = await tune({
        ...opts, offline: !!opts.offline || offlineFromEnv(env), env, progress: tty ? progressBar() : undefined,
        onStep: tty ? (step, steps, loss, rate, secondsLeft) => {
          process.stderr.write(`\r\x1b[Ktune: step ${step}/${steps}, loss ${loss.toFixed(4)}, ${rate.toFixed(1)} tokens/s, ETA ${formatDuration(secondsLeft)}${step === steps ? '\n' : ''}`);
        } : undefined,
      });
      process.stdout.write(`${renderTune(result)}\n`);
    });

  program.command('inspect')
    .description('what lens finds in a model: family, layers, final norm, head, residual, cache entry')
    .option('-m, --model <id|dir>', 'hub repo id or local model directory', DEFAULT_MODEL)
    .addOption(new Option('--dtype <dtype>', 'weights variant').choices(Object.keys(DTYPE_SUFFIX)).default('fp32'))
    .option('--json', 'one JSON object on stdout')
    .option('--offline', 'never touch the network (also HF_HUB_OFFLINE=1)')
    .option('--verbose', 'show stack traces of internal errors')
    .action(async (opts: { model: string; dtype: Dtype; json?: boolean; offline?: boolean }) => {
      const env = process.env;
      const { inspect } = await import('./commands/inspect.js');
      const progress = process.stderr.isTTY === true ? progressBar() : undefined;
      process.stdout.write(`${await inspect(opts.model, { dtype: opts.dtype, offline: !!opts.offline || offlineFromEnv(env), env, progress }, !!opts.json)}\n`);
    });

  const cache = program.command('cache').description('what lens keeps under $LENS_CACHE: list it, remove a model, prune old or excess entries');
  cache.command('list', { isDefault: true }).description('downloads and rewritten entries: model, revision, dtype, size on disk, last use')
    .option('--json', 'one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      const { cacheList } = await import('./commands/cache.js');
      process.stdout.write(`${cacheList(!!opts.json, process.env)}\n`);
    });
  cache.command('rm').argument('<model>', 'hub repo id (org/name or org/name@revision), or the directory an entry was built from')
    .description("remove a model's download and rewritten entries (never one a running lens uses)")
    .addOption(new Option('--dtype <dtype>', 'only this weights variant').choices(Object.keys(DTYPE_SUFFIX)))
    .action(async (model: string, opts: { dtype?: Dtype }) => {
      const { cacheRemove } = await import('./commands/cache.js');
      process.stdout.write(`${cacheRemove(model, opts.dtype, process.env)}\n`);
    });
  cache.command('prune').description('remove entries unused for a while, then the least recently used past a size (default --older-than 30d)')
    .option('--older-than <age>', 'last used longer ago than this: 30d, 12h, 2w')
    .option('--max-size <size>', 'then keep the cache within this size: 20GB, 500MB')
    .action(async (opts: { olderThan?: string; maxSize?: string }) => {
      const { cachePrune } = await import('./commands/cache.js');
      process.stdout.write(`${cachePrune(opts, process.env)}\n`);
    });

  const all = (cmd: Command): Command[] => [cmd, ...cmd.commands.flatMap(all)];
  for (const cmd of all(program).slice(1)) cmd.exitOverride().configureOutput(oneLineErrors);
  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0); // a closed pipe (| head) is not an error
    throw error;
  });
  // The benchmark's peak-memory probe: opt-in by environment, written only where it says.
  const rssFile = process.env.LENS_BENCH_RSS_FILE;
  if (rssFile) process.on('exit', () => writeFileSync(rssFile, String(process.resourceUsage().maxRSS)));
  process.on('SIGINT', () => { process.stderr.write('\nlens: interrupted\n'); process.exit(130); });
  try {
    const program = buildProgram();
    if (argv.length <= 2) { process.stderr.write(program.helpInformation()); return 2; } // no command: usage, on stderr
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code) ? 0 : 2;
    }
    if (error instanceof UserError) {
      process.stderr.write(`lens: ${error.message}${error.hint ? ` (${error.hint})` : ''}\n`);
      return error.exitCode;
    }
    if (verbose) process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    else process.stderr.write(`lens: internal error: ${String((error as Error)?.message ?? error).split('\n')[0]} (run with --verbose for details)\n`);
    return 1;
  }
}
