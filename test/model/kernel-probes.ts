// Questions about onnxruntime's CPU kernels, asked of onnxruntime itself on one-node graphs: MLAS picks
// kernels by CPU (mlas/lib/platform.cpp), and some of its choices change what a model computes. The
// CPU's flags would not do: under an emulator (qemu-user -cpu …) /proc/cpuinfo describes the host, not
// the CPU MLAS sees.
import ort from 'onnxruntime-node';
import { AttrType, DataType, encodeModel, type Graph, type ValueInfo } from '../../src/onnx/proto.js';

/**
 * Whether onnxruntime sums a float16 MatMulNBits product in float16 here, one rounding per term. On
 * arm64 builds (MLAS_F16VEC_INTRINSICS_SUPPORTED: every Linux arm64 build), MatMulNBits with float16
 * input and accuracy_level < 4 runs HQNBIT_CompFp16: the 4-bit weights dequantized to float16 (one
 * rounding each) and `acc = fma16(a_k, w_k, acc)` over k in order, from acc = 0 (columns in full
 * groups of 8; the last N mod 8 columns add rounded products in a tree of 8, then to acc). x86 converts
 * the input to float32, sums in float32 and rounds the output once. So: 1 then 31 terms of 2^-12 against
 * weights of 1: in float16 each term is a quarter ulp of the running 1 and vanishes (1); in float32 they
 * add up to 1 + 31·2^-12, which rounds to 1 + 2^-7.
 */
export function halfSummedNBits(): Promise<boolean> {
  halfSumsProbe ??= (async () => {
    const K = 32, N = 8;
    // Every 4-bit code 9 (two to a byte), zero point 8, scale 1: every weight is 1.
    const graph = halfMatMulNBits(1, K, N, K, new Uint8Array(N * K / 2).fill(0x99), new Uint16Array(N).fill(0x3c00));
    const a = new Uint16Array(K).fill(0x0c00); // 2^-12
    a[0] = 0x3c00; // 1
    const y = await runProbe(graph, new ort.Tensor('float16', a, [1, K]));
    return Array.from(y as Uint16Array).every((bits) => bits === 0x3c00);
  })();
  return halfSumsProbe;
}
let halfSumsProbe: Promise<boolean> | undefined;

/**
 * A one-node graph: y [M, N] = a [M, K] · B, a float16 MatMulNBits (4 bits, blocks of `block` along
 * K, accuracy_level 0, no zero points: 8) of packed codes [N, ⌈K/block⌉, block/2] (low nibble first)
 * and float16 scales (bits) [N · ⌈K/block⌉].
 */
export function halfMatMulNBits(M: number, K: number, N: number, block: number, packed: Uint8Array, scaleBits: Uint16Array): Graph {
  const blocks = Math.ceil(K / block);
  return {
    name: 'half_matmul_nbits',
    node: [{
      name: 'product', op_type: 'MatMulNBits', input: ['a', 'b', 'scales'], output: ['y'], domain: 'com.microsoft',
      attribute: [
        { name: 'K', type: AttrType.INT, i: K }, { name: 'N', type: AttrType.INT, i: N }, { name: 'bits', type: AttrType.INT, i: 4 },
        { name: 'block_size', type: AttrType.INT, i: block }, { name: 'accuracy_level', type: AttrType.INT, i: 0 },
      ],
    }],
    initializer: [
      { name: 'b', dims: [N, blocks, block / 2], data_type: DataType.UINT8, raw_data: packed },
      { name: 'scales', dims: [N * blocks], data_type: DataType.FLOAT16, raw_data: new Uint8Array(scaleBits.buffer, scaleBits.byteOffset, scaleBits.byteLength) },
    ],
    input: [info('a', DataType.FLOAT16, [M, K])],
    output: [info('y', DataType.FLOAT16, [M, N])],
    value_info: [],
  };
}

/** A probe graph's value info: `name` of element type `type` and shape `dims`. */
export function info(name: string, type: number, dims: number[]): ValueInfo {
  return { name, type: { tensor_type: { elem_type: type, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } };
}

/** Runs the one-input, one-output probe `graph` (opset 14, com.microsoft 1) on `a` in a session of its own, as a model session is made; returns its output `y`. */
export async function runProbe(graph: Graph, a: ort.Tensor): Promise<ort.Tensor['data']> {
  const model = { ir_version: 8, opset_import: [{ domain: '', version: 14 }, { domain: 'com.microsoft', version: 1 }], graph };
  const session = await ort.InferenceSession.create(encodeModel(model));
  try {
    return (await session.run({ a })).y.data;
  } finally {
    await session.release();
  }
}
