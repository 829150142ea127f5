/**
 * PyTorch-compatible CPU random generator: the same numbers as
 * `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` in float32 on a CPU, and consecutive draws
 * from one generator continue the stream exactly as torch does.
 *
 * How torch does it (aten CPUGeneratorImpl + cpu/DistributionTemplates.h):
 * - the engine is a standard mt19937 seeded with the low 32 bits of the uint64 seed;
 * - a contiguous float tensor of >= 16 values is first filled with float uniforms u = (draw & 0xFFFFFF) / 2^24,
 *   then each block of 16 is Box-Muller transformed (values 0..7 give the u1 = 1 - u side, 8..15 the angle side);
 *   when the count is not a multiple of 16, the last 16 positions are refilled with fresh uniforms and transformed
 *   again (so they overlap the previous block);
 * - fewer than 16 values use the scalar double-precision Box-Muller (53-bit uniforms from two draws), which yields
 *   r cos(theta) and caches r sin(theta) for the next scalar draw. The cache is generator state: it survives
 *   between randn calls and is cleared by reseeding.
 *
 * Example:
 *   const g = new TorchGenerator(42);
 *   const latent = g.randn([1, 4, 64, 64]);   // == torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))
 *   const more = g.randn([1, 4, 64, 64]);     // the next draw from the same generator
 * CudaTorchGenerator (end of file) reproduces torch's CUDA generator instead (Philox through curand).
 */

/** What samplers take for noise: torch's CPU generator, or a replay of recorded noise in tests. */
export interface NoiseSource {
  randn(shape: number[]): Float32Array;
}

const MT_N = 624;
const MT_M = 397;
const TWO_PI_F32 = Math.fround(2 * Math.PI);
const INV_2_24 = 1 / 16777216;
const INV_2_53 = 1 / 9007199254740992;
const TWO_POW_64 = 1n << 64n;

/** Normalises a torch seed (uint64, or a negative int64 that torch wraps) to a bigint in [0, 2^64). */
export function normaliseSeed(seed: number | bigint): bigint {
  if (typeof seed === 'number' && (!Number.isInteger(seed) || !Number.isFinite(seed)))
    throw new Error(`seed must be an integer, got ${seed}`);
  let s = BigInt(seed);
  if (s < 0n && s >= -(1n << 63n)) s += TWO_POW_64;
  if (s < 0n || s >= TWO_POW_64) throw new Error(`seed ${seed} is outside the uint64 range torch accepts`);
  return s;
}

/** mt19937 exactly as std::mt19937 / at::mt19937 (32-bit outputs). */
class MersenneTwister {
  private readonly state = new Uint32Array(MT_N);
  private next = MT_N;

  constructor(seed32: number) {
    const mt = this.state;
    mt[0] = seed32 >>> 0;
    for (let i = 1; i < MT_N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      // 1812433253 * prev + i in uint32 arithmetic (Math.imul keeps the low 32 bits)
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  private twist(): void {
    const mt = this.state;
    for (let i = 0; i < MT_N; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % MT_N] & 0x7fffffff);
      mt[i] = mt[(i + MT_M) % MT_N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.next = 0;
  }

  /** next tempered 32-bit output, as an unsigned number */
  nextUint32(): number {
    if (this.next >= MT_N) this.twist();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** torch.Generator('cpu') with manual_seed(seed); see the file comment for the algorithm. */
export class TorchGenerator implements NoiseSource {
  readonly seed: bigint;
  private engine: MersenneTwister;
  /** the scalar Box-Muller path's cached second value (torch's next_double_normal_sample) */
  private cachedNormal: number | null = null;

  constructor(seed: number | bigint) {
    this.seed = normaliseSeed(seed);
    this.engine = new MersenneTwister(Number(this.seed & 0xffffffffn));
  }

  /** float uniform in [0, 1) from one 24-bit draw (at::uniform_real_distribution<float>) */
  private uniformFloat(): number {
    return (this.engine.nextUint32() & 0xffffff) * INV_2_24;
  }

  /** double uniform in [0, 1) from a 64-bit draw (first 32-bit draw = high half), 53 bits kept */
  private uniformDouble(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    // low 53 bits of (hi << 32 | lo) = (hi & 0x1FFFFF) * 2^32 + lo, exact in a double
    return ((hi & 0x1fffff) * 4294967296 + lo) * INV_2_53;
  }

  /** at::normal_distribution<double>: one standard normal, with the cached partner value */
  private scalarNormal(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** Box-Muller over data[at..at+16) holding float uniforms, in float32 like torch's vectorised kernel */
  private static transform16(data: Float32Array, at: number): void {
    for (let j = at; j < at + 8; j++) {
      const u1 = 1 - data[j]; // exact in float32: (0, 1]
      const radius = Math.fround(Math.sqrt(Math.fround(-2 * Math.fround(Math.log(u1)))));
      const theta = Math.fround(TWO_PI_F32 * data[j + 8]);
      data[j] = radius * Math.cos(theta);
      data[j + 8] = radius * Math.sin(theta);
    }
  }

  /** Standard normal float32 values in row-major order, continuing this generator's stream. */
  randn(shape: number[]): Float32Array {
    let n = 1;
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`randn: invalid shape [${shape}]`);
      n *= d;
    }
    const out = new Float32Array(n);
    if (n >= 16) {
      for (let i = 0; i < n; i++) out[i] = this.uniformFloat();
      for (let i = 0; i + 16 <= n; i += 16) TorchGenerator.transform16(out, i);
      if (n % 16 !== 0) {
        // torch recomputes the last 16 values from fresh uniforms
        for (let i = n - 16; i < n; i++) out[i] = this.uniformFloat();
        TorchGenerator.transform16(out, n - 16);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.scalarNormal();
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// torch's CUDA generator (Philox4x32-10 through curand), for reproducing what NVIDIA users get.

/** The GPU properties that decide torch's launch grid, and therefore which Philox stream feeds which element. */
export interface CudaDeviceShape {
  multiProcessorCount: number;
  maxThreadsPerMultiProcessor: number;
}

const PHILOX_M0 = 0xd2511f53,
  PHILOX_M1 = 0xcd9e8d57,
  PHILOX_W0 = 0x9e3779b9,
  PHILOX_W1 = 0xbb67ae85;
const TWO_POW_32_INV = 2.3283064e-10; // curand's CURAND_2POW32_INV (float)
const TWO_POW_32_INV_2PI = 2.3283064e-10 * 6.2831855; // CURAND_2POW32_INV_2PI (float)

/** high 32 bits of a * b for uint32 a, b (the low half is Math.imul) */
function mulHi(a: number, b: number): number {
  const aHi = a >>> 16,
    aLo = a & 0xffff,
    bHi = b >>> 16,
    bLo = b & 0xffff;
  const mid = aHi * bLo + ((aLo * bLo) >>> 16); // < 2^32, exact
  return (aHi * bHi + Math.floor(mid / 65536) + Math.floor(((mid & 0xffff) + aLo * bHi) / 65536)) >>> 0;
}

/** Philox4x32-10 block cipher: counter (4 words) and key (2 words) -> 4 random words */
function philox(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array): void {
  for (let round = 0; round < 10; round++) {
    const hi0 = mulHi(PHILOX_M0, c0),
      lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulHi(PHILOX_M1, c2),
      lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + PHILOX_W0) >>> 0;
    k1 = (k1 + PHILOX_W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/**
 * torch.Generator('cuda').manual_seed(seed) + torch.randn(shape, device='cuda', generator=g), as curand computes it:
 * element i belongs to thread i mod S (S = threads in torch's grid) which owns Philox subsequence (i mod S) starting
 * at the generator's offset; each thread's curand_normal4 draw covers elements i, i + S, i + 2S, i + 3S.
 * The device shape matters when a tensor needs more threads than the GPU grid allows (default: H100/H200).
 * Example: new CudaTorchGenerator(42).randn([1, 4, 128, 128])
 */
export class CudaTorchGenerator implements NoiseSource {
  readonly seed: bigint;
  /** philox offset per thread, in 32-bit outputs (torch's philox_offset_per_thread) */
  private offset = 0;

  constructor(
    seed: number | bigint,
    private readonly device: CudaDeviceShape = { multiProcessorCount: 132, maxThreadsPerMultiProcessor: 2048 },
  ) {
    this.seed = normaliseSeed(seed);
  }

  randn(shape: number[]): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (n === 0) return out;
    const blockSize = 256,
      unroll = 4;
    const maxBlocks = this.device.multiProcessorCount * Math.floor(this.device.maxThreadsPerMultiProcessor / blockSize);
    const threads = Math.min(maxBlocks, Math.ceil(n / blockSize)) * blockSize;
    const perThread = Math.floor((n - 1) / (threads * unroll)) + 1; // curand_normal4 calls per thread
    const k0 = Number(this.seed & 0xffffffffn),
      k1 = Number(this.seed >> 32n);
    const base = this.offset / 4; // torch offsets are multiples of 4: whole Philox counters
    const words = new Uint32Array(4);
    for (let t = 0; t < Math.min(threads, n); t++) {
      for (let call = 0; call < perThread; call++) {
        // counter = (offset/4 + call) in words 0-1, subsequence t in words 2-3 (t < 2^32)
        const c = base + call;
        philox(c >>> 0, Math.floor(c / 4294967296) >>> 0, t, 0, k0, k1, words);
        for (let pair = 0; pair < 2; pair++) {
          // curand's Box-Muller: u in (0, 1], angle in (0, 2pi); x = r sin, y = r cos
          const u = Math.fround(words[2 * pair] * TWO_POW_32_INV + TWO_POW_32_INV / 2);
          const v = Math.fround(words[2 * pair + 1] * TWO_POW_32_INV_2PI + TWO_POW_32_INV_2PI / 2);
          const r = Math.fround(Math.sqrt(Math.fround(-2 * Math.fround(Math.log(u)))));
          const i0 = t + threads * (call * unroll + 2 * pair),
            i1 = i0 + threads;
          if (i0 < n) out[i0] = r * Math.sin(v);
          if (i1 < n) out[i1] = r * Math.cos(v);
        }
      }
    }
    this.offset += perThread * unroll;
    return out;
  }
}
