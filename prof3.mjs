import ort from 'onnxruntime-node';
import { performance } from 'node:perf_hooks';
import { readdirSync, readFileSync } from 'node:fs';
const entry = '/tmp/bigcache2/lens/' + readdirSync('/tmp/bigcache2/lens')[0] + '/onnx/model.onnx';
const mode = process.argv[2];
const s = await ort.InferenceSession.create(entry, { enableProfiling: mode.endsWith('prof'), profileFilePrefix: '/tmp/ortprof', extra: mode.startsWith('prepack') ? {} : { session: { disable_prepacking: '1' } } });
const T = 10;
const ids = BigInt64Array.from({ length: T }, (_, i) => BigInt(100 + i * 37));
const feeds = { input_ids: new ort.Tensor('int64', ids, [1, T]), attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]), position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]), lens_positions: new ort.Tensor('int64', BigInt64Array.of(BigInt(T - 1)), [1]), lens_norm_mask: new ort.Tensor('bool', new Uint8Array(13).fill(1), [13]) };
for (let i = 0; i < 3; i++) await s.run(feeds);
const ts = [];
for (let i = 0; i < 15; i++) { const t = performance.now(); await s.run(feeds); ts.push(performance.now() - t); }
ts.sort((a, b) => a - b); console.log(mode, 'median', ts[7].toFixed(1));
if (mode.endsWith('prof')) {
  s.endProfiling();
  const f = readdirSync('/tmp').filter(x => x.startsWith('ortprof')).sort().pop();
  const ev = JSON.parse(readFileSync('/tmp/' + f, 'utf8'));
  const byOp = {}; const byNode = {};
  for (const e of ev) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) { const op = e.args.op_name; byOp[op] = (byOp[op] ?? 0) + e.dur / 18; byNode[e.name] = (byNode[e.name] ?? 0) + e.dur / 18; }
  console.log(Object.entries(byOp).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}ms`).join(', '));
  console.log(Object.entries(byNode).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}ms`).join('\n'));
}
