/**
 * Safetensors reader: 8-byte little-endian header length, JSON header, raw little-endian tensor bytes.
 * Tensors are read lazily with positioned reads, so a 7 GB checkpoint is never held whole in the JS heap; offsets are
 * plain JS numbers (exact to 2^53), so tensors past 2 GiB / 4 GiB read like any other.
 * Every error is a SafetensorsError whose message starts with the file name and says what is wrong.
 * Example: const f = SafetensorsFile.open(path); const w = f.readFloat32('model.diffusion_model.out.2.weight'); f.close();
 */
import { openSync, readSync, fstatSync, closeSync } from 'node:fs';
import { basename } from 'node:path';
import type { Tensor } from '../tensor.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
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
  constructor(
    readonly file: string,
    what: string,
  ) {
    super(`${basename(file)}: ${what}`);
    this.name = 'SafetensorsError';
  }
}

function parseHeaderEntries(
  path: string,
  header: Record<string, unknown>,
  dataStart: number,
  size: number,
): TensorInfo[] {
  const out: TensorInfo[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = v as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info !== 'object' || typeof info.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
      throw new SafetensorsError(path, `tensor "${name}" has an unsupported or missing dtype (${String(info?.dtype)})`);
    }
    const shape = info.shape,
      offs = info.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new SafetensorsError(path, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      offs[1] < offs[0]
    ) {
      throw new SafetensorsError(path, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const dtype = info.dtype as SafetensorsDtype;
    const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (offs[1] - offs[0] !== bytes) {
      throw new SafetensorsError(
        path,
        `tensor "${name}" has bad data_offsets [${offs[0]}, ${offs[1]}]: ${offs[1] - offs[0]} bytes, its shape [${shape}] and dtype ${dtype} need ${bytes}`,
      );
    }
    const begin = dataStart + offs[0],
      end = dataStart + offs[1];
    if (end > size)
      throw new SafetensorsError(
        path,
        `file is truncated: tensor "${name}" ends at byte ${end} but the file has ${size} bytes`,
      );
    out.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // the format requires non-overlapping byte ranges; overlap means a corrupt or hand-edited header
  const sorted = [...out].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1],
      cur = sorted[i];
    if (cur.begin < prev.end && cur.end > cur.begin) {
      throw new SafetensorsError(path, `bad data_offsets: tensors "${prev.name}" and "${cur.name}" overlap`);
    }
  }
  return out;
}

export class SafetensorsFile {
  /** readSync takes at most 2^31-1 bytes per call: big tensors are read in pieces of this size (tests lower it) */
  static readChunkBytes = 1 << 30;
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string>;
  private constructor(
    readonly path: string,
    private fd: number,
    readonly size: number,
    header: Record<string, unknown>,
    readonly dataStart: number,
  ) {
    const meta = header['__metadata__'];
    this.metadata = (meta && typeof meta === 'object' ? meta : {}) as Record<string, string>;
    for (const t of parseHeaderEntries(path, header, dataStart, size)) this.tensors.set(t.name, t);
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(path, `cannot open: ${(e as Error).message}`);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(path, `file is truncated (${size} bytes, not even a header length)`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER || headerLen < 2) {
        // PyTorch's torch.save files (.ckpt / .pt / .pth / .bin): a zip archive, or a bare pickle (protocol 2+)
        const torchFile = lenBuf.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1')) || lenBuf[0] === 0x80;
        throw new SafetensorsError(
          path,
          torchFile
            ? 'a PyTorch pickle file (torch.save: .ckpt/.pt/.pth), not safetensors; only .safetensors files can be ' +
                'read here: convert it to .safetensors (or download the .safetensors release of the model)'
            : `not a safetensors file (header length ${headerLen})`,
        );
      }
      if (8 + headerLen > size)
        throw new SafetensorsError(
          path,
          `file is truncated inside its header (header needs ${8 + headerLen} bytes, file has ${size})`,
        );
      const hb = Buffer.alloc(headerLen);
      readSync(fd, hb, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(hb.toString('utf8'));
      } catch {
        throw new SafetensorsError(path, 'header is not valid JSON (corrupt or not a safetensors file)');
      }
      if (!header || typeof header !== 'object' || Array.isArray(header))
        throw new SafetensorsError(path, 'header is not a JSON object');
      return new SafetensorsFile(path, fd, size, header as Record<string, unknown>, 8 + headerLen);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `has no tensor "${name}"`);
    return t;
  }
  /** Shape of one tensor (a copy); lets a SafetensorsFile serve as a key/shape source for detection. */
  shape(name: string): number[] {
    return [...this.info(name).shape];
  }

  /** Raw bytes of one tensor, in a fresh ArrayBuffer starting at offset 0 (so typed views over it are aligned). */
  readBytes(name: string): Buffer {
    const t = this.info(name);
    if (this.fd < 0) throw new SafetensorsError(this.path, `is closed (reading "${name}")`);
    const n = t.end - t.begin;
    const buf = Buffer.from(new ArrayBuffer(n));
    for (let off = 0; off < n;) {
      const len = Math.min(SafetensorsFile.readChunkBytes, n - off);
      const got = readSync(this.fd, buf, off, len, t.begin + off);
      if (got <= 0)
        throw new SafetensorsError(this.path, `short read in tensor "${name}" at byte ${t.begin + off} (file shrank?)`);
      off += got;
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
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** IEEE half to float, via the exponent/mantissa bits. */
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

/** A view of buf's bytes as a typed array: zero-copy when aligned, else one aligned copy. */
function alignedBytes(buf: Uint8Array, align: number): Uint8Array {
  if (buf.byteOffset % align === 0) return buf;
  const copy = new Uint8Array(buf.length);
  copy.set(buf);
  return copy;
}

function toFloat32(buf: Uint8Array, dtype: SafetensorsDtype, file = '?', name = '?'): Float32Array {
  const width = DTYPE_BYTES[dtype];
  if (!width) throw new SafetensorsError(file, `tensor "${name}": cannot convert dtype ${dtype as string}`);
  const n = buf.length / width;
  const a = alignedBytes(buf, width);
  const ab = a.buffer,
    o = a.byteOffset;
  // F32 from a fresh aligned buffer needs no conversion: return the view itself
  if (dtype === 'F32')
    return a === buf && o === 0 && ab.byteLength === buf.length
      ? new Float32Array(ab as ArrayBuffer, 0, n)
      : new Float32Array(ab.slice(o, o + buf.length) as ArrayBuffer);
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F64': {
      const v = new Float64Array(ab, o, n);
      for (let i = 0; i < n; i++) out[i] = v[i];
      break;
    }
    case 'F16': {
      const v = new Uint16Array(ab, o, n);
      const tab = getHalfTable();
      for (let i = 0; i < n; i++) out[i] = tab[v[i]];
      break;
    }
    case 'BF16': {
      const v = new Uint16Array(ab, o, n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = v[i] << 16;
      break;
    }
    case 'I64': {
      const v = new BigInt64Array(ab, o, n);
      for (let i = 0; i < n; i++) out[i] = Number(v[i]);
      break;
    }
    case 'I32': {
      const v = new Int32Array(ab, o, n);
      for (let i = 0; i < n; i++) out[i] = v[i];
      break;
    }
    case 'I16': {
      const v = new Int16Array(ab, o, n);
      for (let i = 0; i < n; i++) out[i] = v[i];
      break;
    }
    case 'I8': {
      const v = new Int8Array(ab, o, n);
      for (let i = 0; i < n; i++) out[i] = v[i];
      break;
    }
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = a[i];
      break;
  }
  return out;
}
