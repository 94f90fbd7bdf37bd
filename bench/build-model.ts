// Writes the benchmark's GPT-2-small-shaped model (argv: directory, form, shape as JSON).
// Run as its own process: a child's peak RSS on Linux starts from the size of the process that
// spawned it, so the benchmark must not itself hold the gigabytes this takes.
import { writeFixture, type Gpt2Config } from '../test/fixtures/gpt2.js';

const [dir, form, shape] = process.argv.slice(2);
writeFixture(dir, form, JSON.parse(shape) as Gpt2Config);
