// lens serve's costs on one model: the first answer after start (spawn `lens serve`, wait for its
// address, POST /api/run) against the CLI's cold run, and a warm POST /api/run per prompt (the same
// record the per-prompt row builds: position -1, k 5, the target " football"'s first token) against
// the CLI's per-prompt cost. Prints JSON timings.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadLensModel } from '../src/model/runtime.js';
import { ROOT } from '../test/helpers.js';

const [dir, promptsJson, dtype = 'fp32'] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson) as string[];
const probe = await loadLensModel(dir, { dtype: dtype as 'fp32', offline: true, env: process.env });
const target = probe.encode(' football')[0];
await probe.dispose();

function post(origin: string, body: unknown): Promise<void> {
  const url = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: '/api/run', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume().on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`POST /api/run: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const start = performance.now();
const server = spawn(process.execPath, [join(ROOT, 'bin', 'lens.js'), 'serve', '-m', dir, '--dtype', dtype, '--port', '0', '--offline'], { stdio: ['ignore', 'ignore', 'pipe'] });
const origin = await new Promise<string>((resolve, reject) => {
  let text = '';
  server.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    const match = /serving (http:\/\/\S+?)\/?\n/.exec(text);
    if (match) resolve(match[1]);
  });
  server.on('exit', (code) => reject(new Error(`lens serve exited (${code}): ${text}`)));
});
const body = (prompt: string) => ({ prompt, k: 5, targets: [{ id: target }] });
await post(origin, body(prompts[0]));
const firstAnswer = performance.now() - start;
const warm: number[] = [];
for (const prompt of [...prompts, ...prompts, ...prompts]) {
  const t = performance.now();
  await post(origin, body(prompt));
  warm.push(performance.now() - t);
}
server.removeAllListeners('exit');
server.kill('SIGTERM');
process.stdout.write(JSON.stringify({ firstAnswer, warm }));
