// A pickle reader that never executes anything: it interprets the opcodes torch.save emits for a
// state dict (protocol 2) and builds plain values. The only callables it knows are the few a state
// dict needs, each replaced by a data constructor; any other global is refused before it is used.
import { UserError } from '../errors.js';

/** A storage reference from a persistent id: element type, the archive key of its bytes, element count. */
export interface StorageRef { kind: 'storage'; dtype: StorageDtype; key: string; numel: number }
/** A tensor as `_rebuild_tensor_v2` describes it: a view of a storage (offset, shape, strides in elements). */
export interface TensorRef { kind: 'tensor'; storage: StorageRef; offset: number; shape: number[]; stride: number[] }
export type StorageDtype = 'float32' | 'float16' | 'bfloat16';
/** What the reader builds: numbers, strings, booleans, None, tuples/lists (arrays), dicts (Maps), storages and tensors. */
export type PickleValue = null | boolean | number | string | PickleValue[] | Map<PickleValue, PickleValue> | StorageRef | TensorRef | Global;
interface Global { kind: 'global'; name: string }

const STORAGE_TYPES: Record<string, StorageDtype> = {
  'torch FloatStorage': 'float32',
  'torch HalfStorage': 'float16',
  'torch BFloat16Storage': 'bfloat16',
};
const ALLOWED_GLOBALS = new Set(['collections OrderedDict', 'torch._utils _rebuild_tensor_v2', ...Object.keys(STORAGE_TYPES)]);

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

const isObject = (v: unknown): v is { kind: string } => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map);
const isGlobal = (v: unknown, name: string) => isObject(v) && v.kind === 'global' && (v as Global).name === name;
const bad = (what: string) => new UserError(`unsupported or damaged pickle: ${what}`);

function nonNegativeInt(v: StackItem, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} is not a non-negative integer`);
  return v;
}

function intTuple(v: StackItem, what: string): number[] {
  if (!Array.isArray(v)) throw bad(`${what} is not a tuple`);
  return v.map((x) => nonNegativeInt(x, what));
}

/** The storage a persistent id names: ('storage', <storage type>, key, location, numel). */
function persistentStorage(pid: StackItem): StorageRef {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') throw bad('a persistent id that is not a storage');
  const type = pid[1];
  const typeName = isObject(type) && type.kind === 'global' ? (type as Global).name : '';
  const dtype = STORAGE_TYPES[typeName];
  if (!dtype) throw bad(`storage type ${typeName || String(type)}`);
  if (typeof pid[2] !== 'string' || !/^\w+$/.test(pid[2])) throw bad('a storage key that is not a plain name');
  return { kind: 'storage', dtype, key: pid[2], numel: nonNegativeInt(pid[4], 'a storage size') };
}

/** `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` as data. */
function rebuildTensor(args: StackItem): TensorRef {
  if (!Array.isArray(args) || args.length < 6 || args.length > 7) throw bad('_rebuild_tensor_v2 with unexpected arguments');
  const storage = args[0];
  if (!isObject(storage) || storage.kind !== 'storage') throw bad('a tensor without a storage');
  const shape = intTuple(args[2], 'a tensor size');
  const stride = intTuple(args[3], 'a tensor stride');
  if (shape.length !== stride.length) throw bad('a tensor whose size and stride differ in length');
  return { kind: 'tensor', storage: storage as StorageRef, offset: nonNegativeInt(args[1], 'a storage offset'), shape, stride };
}

function reduce(callable: StackItem, args: StackItem): PickleValue {
  if (isGlobal(callable, 'collections OrderedDict')) {
    if (!Array.isArray(args) || args.length !== 0) throw bad('OrderedDict called with arguments');
    return new Map();
  }
  if (isGlobal(callable, 'torch._utils _rebuild_tensor_v2')) return rebuildTensor(args);
  throw bad('a call of something other than OrderedDict or _rebuild_tensor_v2');
}

/**
 * The value a protocol-2 pickle builds, interpreted without executing it. Throws a UserError naming
 * the problem on a global outside the allow-list (e.g. `os system`), an unknown opcode, or a
 * malformed or truncated stream.
 */
export function readPickle(bytes: Uint8Array): PickleValue {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let at = 0;
  const need = (n: number) => { if (at + n > bytes.length) throw bad('the stream ends early'); };
  const pop = (): StackItem => {
    if (stack.length === 0) throw bad('a pop from an empty stack');
    return stack.pop()!;
  };
  const popValue = (): PickleValue => {
    const item = pop();
    if (item === MARK) throw bad('a mark where a value belongs');
    return item;
  };
  const popToMark = (): PickleValue[] => {
    const mark = stack.lastIndexOf(MARK);
    if (mark < 0) throw bad('no mark');
    const items = stack.splice(mark) as PickleValue[];
    items.shift();
    return items;
  };
  const top = (): PickleValue => {
    const item = stack.at(-1);
    if (item === undefined || item === MARK) throw bad('an operation on an empty stack');
    return item;
  };
  const readLine = (): string => {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) throw bad('the stream ends early');
    const line = decoder.decode(bytes.subarray(at, end));
    at = end + 1;
    return line;
  };
  const setItems = (dict: PickleValue, items: PickleValue[]) => {
    if (!(dict instanceof Map) || items.length % 2 !== 0) throw bad('SETITEMS on something other than a dict');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
  };
  for (;;) {
    need(1);
    const opcode = bytes[at++];
    switch (opcode) {
      case 0x80: need(1); if (bytes[at++] > 5) throw bad('a pickle protocol above 5'); break; // PROTO
      case 0x95: need(8); at += 8; break; // FRAME: framing only
      case 0x2e: { // STOP
        const result = popValue();
        return result;
      }
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: need(1); stack.push(bytes[at]); at += 1; break; // BININT1
      case 0x4d: need(2); stack.push(v.getUint16(at, true)); at += 2; break; // BININT2
      case 0x4a: need(4); stack.push(v.getInt32(at, true)); at += 4; break; // BININT
      case 0x8a: { // LONG1: little-endian two's complement of n bytes
        need(1);
        const n = bytes[at++];
        need(n);
        if (n > 8) throw bad('an integer too large');
        let value = 0n;
        for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i]);
        if (n > 0 && bytes[at + n - 1] & 0x80) value -= 1n << BigInt(8 * n);
        at += n;
        if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) throw bad('an integer too large');
        stack.push(Number(value));
        break;
      }
      case 0x47: need(8); stack.push(v.getFloat64(at, false)); at += 8; break; // BINFLOAT
      case 0x58: { // BINUNICODE
        need(4);
        const n = v.getUint32(at, true);
        at += 4;
        need(n);
        stack.push(decoder.decode(bytes.subarray(at, at + n)));
        at += n;
        break;
      }
      case 0x8c: { // SHORT_BINUNICODE
        need(1);
        const n = bytes[at++];
        need(n);
        stack.push(decoder.decode(bytes.subarray(at, at + n)));
        at += n;
        break;
      }
      case 0x63: { // GLOBAL: refused here, before anything could look it up
        const name = `${readLine()} ${readLine()}`;
        if (!ALLOWED_GLOBALS.has(name)) throw new UserError(`refusing to load a pickle that references ${name} (a state dict needs only OrderedDict, _rebuild_tensor_v2 and storage types)`);
        stack.push({ kind: 'global', name });
        break;
      }
      case 0x71: need(1); memo.set(bytes[at], top()); at += 1; break; // BINPUT
      case 0x72: need(4); memo.set(v.getUint32(at, true), top()); at += 4; break; // LONG_BINPUT
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const long = opcode === 0x6a;
        need(long ? 4 : 1);
        const index = long ? v.getUint32(at, true) : bytes[at];
        at += long ? 4 : 1;
        if (!memo.has(index)) throw bad(`memo entry ${index} read before it was written`);
        stack.push(memo.get(index)!);
        break;
      }
      case 0x74: stack.push(popToMark()); break; // TUPLE
      case 0x85: stack.push([popValue()]); break; // TUPLE1
      case 0x86: { const b = popValue(), a = popValue(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = popValue(), b = popValue(), a = popValue(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x51: stack.push(persistentStorage(popValue())); break; // BINPERSID
      case 0x52: { const args = popValue(); stack.push(reduce(popValue(), args)); break; } // REDUCE
      case 0x73: { const value = popValue(), key = popValue(); setItems(top(), [key, value]); break; } // SETITEM
      case 0x75: { const items = popToMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const item = popValue(); const list = top(); if (!Array.isArray(list)) throw bad('APPEND to a non-list'); list.push(item); break; } // APPEND
      case 0x65: { const items = popToMark(); const list = top(); if (!Array.isArray(list)) throw bad('APPENDS to a non-list'); list.push(...items); break; } // APPENDS
      case 0x62: { // BUILD: torch sets an OrderedDict's _metadata this way; it carries nothing lens reads
        popValue();
        if (!(top() instanceof Map)) throw bad('BUILD on something other than a dict');
        break;
      }
      default:
        throw bad(`opcode 0x${opcode.toString(16).padStart(2, '0')} at byte ${at - 1}`);
    }
  }
}

/** A tensor to write: its shape and its float32 values in row-major order. */
export interface TensorInput { shape: number[]; data: Float32Array }

/**
 * A protocol-2 pickle of an OrderedDict name → float32 tensor, as torch.save writes a state dict:
 * tensor i's storage is persistent id ('storage', FloatStorage, str(i), 'cpu', numel), so its bytes
 * belong at `data/<i>` of the archive. Globals are written once and reused through the memo.
 */
export function writeStateDictPickle(names: string[], tensors: TensorInput[]): Uint8Array {
  const out: number[] = [];
  const encoder = new TextEncoder();
  const byte = (...b: number[]) => out.push(...b);
  const uint32 = (n: number) => byte(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  const text = (s: string) => { const b = encoder.encode(s); byte(0x58); uint32(b.length); for (const x of b) out.push(x); };
  const int = (n: number) => {
    if (n < 0x100) byte(0x4b, n);
    else if (n < 0x10000) byte(0x4d, n & 0xff, n >>> 8);
    else if (n < 0x80000000) { byte(0x4a); uint32(n); }
    else { // LONG1 with 8 bytes
      byte(0x8a, 8);
      let value = BigInt(n);
      for (let i = 0; i < 8; i++) { out.push(Number(value & 0xffn)); value >>= 8n; }
    }
  };
  const tuple = (items: number[]) => { byte(0x28); items.forEach(int); byte(0x74); };
  const memo = new Map<string, number>();
  const global = (name: string) => {
    const index = memo.get(name);
    if (index !== undefined) { byte(0x68, index); return; }
    const [module, attribute] = name.split(' ');
    byte(0x63, ...encoder.encode(`${module}\n${attribute}\n`));
    memo.set(name, memo.size);
    byte(0x71, memo.size - 1);
  };
  byte(0x80, 2);
  global('collections OrderedDict');
  byte(0x29, 0x52); // OrderedDict()
  byte(0x28); // MARK for SETITEMS
  tensors.forEach((tensor, i) => {
    const numel = tensor.shape.reduce((a, b) => a * b, 1);
    if (numel !== tensor.data.length) throw new RangeError(`tensor ${names[i]}: ${tensor.data.length} values for shape [${tensor.shape}]`);
    text(names[i]);
    global('torch._utils _rebuild_tensor_v2');
    byte(0x28); // MARK: the arguments
    byte(0x28); text('storage'); global('torch FloatStorage'); text(String(i)); text('cpu'); int(numel); byte(0x74, 0x51);
    int(0);
    tuple(tensor.shape);
    const stride = tensor.shape.map((_, d) => tensor.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    tuple(stride);
    byte(0x89); // requires_grad False
    global('collections OrderedDict');
    byte(0x29, 0x52); // backward hooks: OrderedDict()
    byte(0x74, 0x52); // TUPLE, REDUCE
  });
  byte(0x75, 0x2e); // SETITEMS, STOP
  return Uint8Array.from(out);
}
