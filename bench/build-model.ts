// Writes a benchmark model (argv: directory, kind gpt2|llama, form, shape as JSON, and optionally
// "declared" for weights in model.onnx_data declared in config.json, as transformers.js repositories
// of large models publish them). Run as its own process: a child's peak RSS on Linux starts from the
// size of the process that spawned it, so the benchmark must not itself hold the gigabytes this takes.
import { writeFixture, type Gpt2Config } from '../test/fixtures/gpt2.js';
import { declareExternalData } from '../test/fixtures/layouts.js';
import { writeDecoderFixture, type DecoderConfig } from '../test/fixtures/llama.js';
import { writeGenaiQ4, type GenaiShape } from './build-genai-q4.js';

const [dir, kind, form, shape, layout] = process.argv.slice(2);
if (kind === 'genai-q4') writeGenaiQ4(dir, JSON.parse(shape) as GenaiShape, layout !== 'unaligned');
else if (kind === 'llama') writeDecoderFixture(dir, JSON.parse(shape) as DecoderConfig, form);
else writeFixture(dir, form, JSON.parse(shape) as Gpt2Config);
if (layout === 'declared') declareExternalData(dir, true, 1);
