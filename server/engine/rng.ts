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
  if (typeof seed === 'number' && (!Number.isInteger(seed) || !Number.isFinite(seed))) throw new Error(`seed must be an integer, got ${seed}`);
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
