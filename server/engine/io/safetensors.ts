/**
 * Safetensors reader: 8-byte little-endian header length, JSON header, raw little-endian tensor bytes.
 * Tensors are read lazily with positioned reads, so a 7 GB checkpoint is never held whole in the JS heap.
 * Example: const f = SafetensorsFile.open(path); const w = f.readFloat32('model.diffusion_model.out.2.weight');
 */
import { openSync, readSync, fstatSync, closeSync } from 'node:fs';
import { basename } from 'node:path';
import type { Tensor } from '../tensor.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** absolute byte offsets in the file */
  begin: number;
  end: number;
}

export class SafetensorsError extends Error {
  constructor(file: string, what: string) {
    super(`${basename(file)}: ${what}`);
    this.name = 'SafetensorsError';
  }
}

export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string>;
  private constructor(readonly path: string, private fd: number, readonly size: number, header: Record<string, unknown>, dataStart: number) {
    const meta = header['__metadata__'];
    this.metadata = (meta && typeof meta === 'object' ? meta : {}) as Record<string, string>;
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const info = v as { dtype?: string; shape?: unknown; data_offsets?: unknown };
      if (!info || typeof info !== 'object' || typeof info.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
        throw new SafetensorsError(path, `tensor "${name}" has an unsupported or missing dtype (${String(info?.dtype)})`);
      }
      const shape = info.shape, offs = info.data_offsets;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new SafetensorsError(path, `tensor "${name}" has an invalid shape`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[1] < offs[0]) {
        throw new SafetensorsError(path, `tensor "${name}" has invalid data_offsets`);
      }
      const dtype = info.dtype as SafetensorsDtype;
      const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
      if (offs[1] - offs[0] !== bytes) throw new SafetensorsError(path, `tensor "${name}" has ${offs[1] - offs[0]} bytes, its shape and dtype need ${bytes}`);
      const begin = dataStart + offs[0], end = dataStart + offs[1];
      if (end > size) throw new SafetensorsError(path, `file is truncated: tensor "${name}" ends at byte ${end} but the file has ${size} bytes`);
      this.tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
    }
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try { fd = openSync(path, 'r'); } catch (e) { throw new SafetensorsError(path, `cannot open: ${(e as Error).message}`); }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(path, `file is truncated (${size} bytes, not even a header length)`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER || headerLen < 2) throw new SafetensorsError(path, `not a safetensors file (header length ${headerLen})`);
      if (8 + headerLen > size) throw new SafetensorsError(path, `file is truncated inside its header`);
      const hb = Buffer.alloc(headerLen);
      readSync(fd, hb, 0, headerLen, 8);
      let header: unknown;
      try { header = JSON.parse(hb.toString('utf8')); } catch { throw new SafetensorsError(path, 'header is not valid JSON (corrupt or not a safetensors file)'); }
      if (!header || typeof header !== 'object' || Array.isArray(header)) throw new SafetensorsError(path, 'header is not a JSON object');
      return new SafetensorsFile(path, fd, size, header as Record<string, unknown>, 8 + headerLen);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] { return [...this.tensors.keys()]; }
  has(name: string): boolean { return this.tensors.has(name); }
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `has no tensor "${name}"`);
    return t;
  }

  /** Raw bytes of one tensor (a fresh Buffer; reads in chunks so >2 GiB files work). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    const n = t.end - t.begin;
    const buf = Buffer.allocUnsafe(n);
    const CHUNK = 1 << 30;
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      const got = readSync(this.fd, buf, off, len, t.begin + off);
      if (got !== len) throw new SafetensorsError(this.path, `short read in tensor "${name}"`);
    }
    return buf;
  }

  /** One tensor converted to float32. */
  readFloat32(name: string): Float32Array {
    const t = this.info(name);
    return toFloat32(this.readBytes(name), t.dtype, this.path, name);
  }

  readTensor(name: string): Tensor {
    return { shape: [...this.info(name).shape], data: this.readFloat32(name) };
  }

  close(): void {
    if (this.fd >= 0) { closeSync(this.fd); this.fd = -1; }
  }
}

/** IEEE half to float, via a lookup of the exponent/mantissa bits. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

let halfTable: Float32Array | undefined;
function getHalfTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

export function toFloat32(buf: Buffer, dtype: SafetensorsDtype, file = '?', name = '?'): Float32Array {
  const n = buf.length / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  // copy to an aligned buffer first: safetensors offsets need not be aligned for typed-array views
  const aligned = new Uint8Array(buf.length);
  aligned.set(buf);
  switch (dtype) {
    case 'F32': out.set(new Float32Array(aligned.buffer, 0, n)); break;
    case 'F64': { const v = new Float64Array(aligned.buffer, 0, n); for (let i = 0; i < n; i++) out[i] = v[i]; break; }
    case 'F16': { const v = new Uint16Array(aligned.buffer, 0, n); const tab = getHalfTable(); for (let i = 0; i < n; i++) out[i] = tab[v[i]]; break; }
    case 'BF16': { const v = new Uint16Array(aligned.buffer, 0, n); const u = new Uint32Array(out.buffer); for (let i = 0; i < n; i++) u[i] = v[i] << 16; break; }
    case 'I64': { const v = new BigInt64Array(aligned.buffer, 0, n); for (let i = 0; i < n; i++) out[i] = Number(v[i]); break; }
    case 'I32': { const v = new Int32Array(aligned.buffer, 0, n); for (let i = 0; i < n; i++) out[i] = v[i]; break; }
    case 'I16': { const v = new Int16Array(aligned.buffer, 0, n); for (let i = 0; i < n; i++) out[i] = v[i]; break; }
    case 'I8': { const v = new Int8Array(aligned.buffer, 0, n); for (let i = 0; i < n; i++) out[i] = v[i]; break; }
    case 'U8': case 'BOOL': for (let i = 0; i < n; i++) out[i] = aligned[i]; break;
    default: throw new SafetensorsError(file, `tensor "${name}": cannot convert dtype ${dtype as string}`);
  }
  return out;
}
