/**
 * Reads a torch.save file (the zip format of torch >= 1.6) without running any of it: a restricted unpickler that
 * builds only plain values (dicts as Maps, lists, tuples as arrays, numbers, strings, booleans, None) and tensors
 * rebuilt from the archive's storages (torch._utils._rebuild_tensor_v2 / _rebuild_parameter over Float, Half and
 * BFloat16 storages; collections.OrderedDict). Any other global, and every opcode not listed here, is refused, so a
 * malicious pickle can do nothing but fail. Tensors come back as float32 { shape, data }.
 * Example: const sd = readTorchFile('hn.pt') as Map<unknown, unknown>; sd.get('activation_func') // 'relu'
 */
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { halfToFloat } from './safetensors.js';

export class TorchFileError extends Error {}

export interface TorchTensor {
  shape: number[];
  data: Float32Array;
}

/** The zip's entries by name (stored or deflated), from the central directory. */
function zipEntries(buf: Buffer): Map<string, Buffer> {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--)
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) throw new TorchFileError('not a zip archive (a legacy torch file or not a torch file at all)');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out = new Map<string, Buffer>();
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new TorchFileError('corrupt zip central directory');
    const method = buf.readUInt16LE(p + 10);
    const size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28),
      extraLen = buf.readUInt16LE(p + 30),
      commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + size);
    if (method !== 0 && method !== 8) throw new TorchFileError(`zip entry ${name} uses compression ${method}`);
    out.set(name, method === 8 ? inflateRawSync(raw) : raw);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

const STORAGES: Record<string, number> = { FloatStorage: 4, HalfStorage: 2, BFloat16Storage: 2 };

class Global {
  constructor(readonly name: string) {}
}

function storageFloats(bytes: Buffer, kind: string): Float32Array {
  if (kind === 'FloatStorage') {
    const copy = new Uint8Array(bytes); // aligned
    return new Float32Array(copy.buffer, 0, bytes.length / 4);
  }
  const out = new Float32Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) {
    const h = bytes.readUInt16LE(i * 2);
    out[i] = kind === 'HalfStorage' ? halfToFloat(h) : new Float32Array(new Uint32Array([h << 16]).buffer)[0];
  }
  return out;
}

/** Unpickles data.pkl with the storages of `entries`, allowing only the globals above. */
function unpickle(pkl: Buffer, storage: (key: string) => Buffer): unknown {
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const popMark = () => {
    const m = marks.pop();
    if (m === undefined) throw new TorchFileError('pickle: MARK missing');
    return stack.splice(m);
  };
  const top = () => stack[stack.length - 1];
  const line = () => {
    const e = pkl.indexOf(0x0a, p);
    const s = pkl.toString('latin1', p, e);
    p = e + 1;
    return s;
  };
  const global = (module: string, name: string) => {
    const full = `${module}.${name}`;
    const allowed =
      full === 'collections.OrderedDict' ||
      full === 'torch._utils._rebuild_tensor_v2' ||
      full === 'torch._utils._rebuild_parameter' ||
      (module === 'torch' && name in STORAGES);
    if (!allowed) throw new TorchFileError(`pickle refers to ${full}, which is not plain tensor data`);
    return new Global(full);
  };
  const call = (fn: unknown, args: unknown[]): unknown => {
    if (!(fn instanceof Global)) throw new TorchFileError('pickle calls something that is not an allowed global');
    if (fn.name === 'collections.OrderedDict') return new Map();
    if (fn.name === 'torch._utils._rebuild_parameter') return args[0];
    // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]): contiguous tensors only
    const [st, offset, size, stride] = args as [{ data: Float32Array }, number, number[], number[]];
    const shape = [...size];
    let expect = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      if (shape[i] !== 1 && stride[i] !== expect) throw new TorchFileError('a tensor is not contiguous');
      expect *= shape[i];
    }
    const n = shape.reduce((a, b) => a * b, 1);
    return { shape, data: st.data.slice(offset, offset + n) } satisfies TorchTensor;
  };
  for (;;) {
    const op = pkl[p++];
    switch (op) {
      case 0x80:
        p++;
        break; // PROTO
      case 0x95:
        p += 8;
        break; // FRAME
      case 0x7d:
        stack.push(new Map());
        break; // EMPTY_DICT
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x29:
        stack.push([]);
        break; // EMPTY_TUPLE
      case 0x28:
        marks.push(stack.length);
        break; // MARK
      case 0x4a:
        stack.push(pkl.readInt32LE(p));
        p += 4;
        break; // BININT
      case 0x4b:
        stack.push(pkl[p++]);
        break; // BININT1
      case 0x4d:
        stack.push(pkl.readUInt16LE(p));
        p += 2;
        break; // BININT2
      case 0x8a: {
        // LONG1
        const n = pkl[p++];
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(pkl[p + i]);
        if (n && pkl[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(Number(v));
        break;
      }
      case 0x47:
        stack.push(pkl.readDoubleBE(p));
        p += 8;
        break; // BINFLOAT
      case 0x58: {
        const n = pkl.readUInt32LE(p);
        p += 4;
        stack.push(pkl.toString('utf8', p, p + n));
        p += n;
        break;
      }
      case 0x8c: {
        const n = pkl[p++];
        stack.push(pkl.toString('utf8', p, p + n));
        p += n;
        break;
      }
      case 0x55: {
        const n = pkl[p++];
        stack.push(pkl.toString('latin1', p, p + n));
        p += n;
        break;
      }
      case 0x54: {
        const n = pkl.readUInt32LE(p);
        p += 4;
        stack.push(pkl.toString('latin1', p, p + n));
        p += n;
        break;
      }
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x74:
        stack.push(popMark());
        break; // TUPLE
      case 0x85:
        stack.push(stack.splice(-1));
        break;
      case 0x86:
        stack.push(stack.splice(-2));
        break;
      case 0x87:
        stack.push(stack.splice(-3));
        break;
      case 0x73: {
        const v = stack.pop(),
          k = stack.pop();
        (top() as Map<unknown, unknown>).set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = top() as Map<unknown, unknown>;
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: {
        const v = stack.pop();
        (top() as unknown[]).push(v);
        break;
      }
      case 0x65: {
        const items = popMark();
        (top() as unknown[]).push(...items);
        break;
      }
      case 0x71:
        memo.set(pkl[p++], top());
        break; // BINPUT
      case 0x72:
        memo.set(pkl.readUInt32LE(p), top());
        p += 4;
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
        stack.push(memo.get(pkl[p++]));
        break; // BINGET
      case 0x6a:
        stack.push(memo.get(pkl.readUInt32LE(p)));
        p += 4;
        break; // LONG_BINGET
      case 0x63: {
        const m = line();
        stack.push(global(m, line()));
        break;
      } // GLOBAL
      case 0x93: {
        const n = stack.pop() as string,
          m = stack.pop() as string;
        stack.push(global(m, n));
        break;
      }
      case 0x52: {
        const args = stack.pop() as unknown[],
          fn = stack.pop();
        stack.push(call(fn, args));
        break;
      }
      case 0x62:
        stack.pop();
        break; // BUILD: object state (an OrderedDict's _metadata) is not needed
      case 0x51: {
        // BINPERSID: ('storage', storage type, key, location, numel)
        const pid = stack.pop() as unknown[];
        const type = pid[1];
        if (pid[0] !== 'storage' || !(type instanceof Global)) throw new TorchFileError('unknown persistent id');
        const kind = type.name.slice('torch.'.length);
        stack.push({ data: storageFloats(storage(String(pid[2])), kind) });
        break;
      }
      case 0x2e:
        return stack.pop(); // STOP
      default:
        throw new TorchFileError(`pickle opcode 0x${(op ?? 0).toString(16)} at byte ${p - 1} is not allowed`);
    }
  }
}

/** The object a torch.save file holds, read without executing it (see the file comment for what is allowed). */
export function readTorchFile(path: string): unknown {
  const entries = zipEntries(readFileSync(path));
  const pklName = [...entries.keys()].find((n) => n.endsWith('/data.pkl') || n === 'data.pkl');
  if (!pklName) throw new TorchFileError('the archive has no data.pkl');
  const root = pklName.slice(0, -'data.pkl'.length);
  return unpickle(entries.get(pklName)!, (key) => {
    const b = entries.get(`${root}data/${key}`);
    if (!b) throw new TorchFileError(`storage ${key} is missing from the archive`);
    return b;
  });
}
