// The one large product of lens tune's backward pass, g_y = g_z · W_U ([rows, V] × [V, d]), as a
// one-node onnxruntime graph with W_U as its weight: many times faster than a JavaScript loop.
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel } from '../onnx/proto.js';

/** g_z [rows, V] → g_z · W_U [rows, d], both flattened; `release` frees the session. */
export interface HeadProjection { project(gradZ: Float32Array, rows: number): Promise<Float32Array>; release(): Promise<void> }

/** A projection through `unembed` W_U [V, d] (flattened). Throws if onnxruntime refuses the graph. */
export async function createHeadProjection(unembed: Float32Array, V: number, d: number): Promise<HeadProjection> {
  const info = (name: string, dims: (number | string)[]) => ({
    name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((dim) => (typeof dim === 'number' ? { dim_value: dim } : { dim_param: dim })) } } },
  });
  const bytes = encodeModel({
    ir_version: 8, opset_import: [{ domain: '', version: 14 }],
    graph: {
      name: 'head_projection', node: [{ op_type: 'MatMul', input: ['grad_z', 'unembed'], output: ['grad_y'], attribute: [] }],
      initializer: [{ name: 'unembed', dims: [V, d], data_type: DataType.FLOAT, raw_data: new Uint8Array(unembed.buffer, unembed.byteOffset, unembed.byteLength) }],
      input: [info('grad_z', ['rows', V])], output: [info('grad_y', ['rows', d])], value_info: [],
    },
  });
  const session = await ort.InferenceSession.create(bytes);
  return {
    async project(gradZ, rows) {
      const out = await session.run({ grad_z: new ort.Tensor('float32', gradZ, [rows, V]) });
      return out.grad_y.data as Float32Array;
    },
    release: () => session.release(),
  };
}
