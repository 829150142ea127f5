/**
 * Where samplers get their Gaussian noise. Samplers never own a generator: the caller passes one, so the same
 * sampler can run with a torch-compatible generator (server/engine/rng.ts), a CUDA-Philox one, or recorded noise.
 * Example: const src = new QueuedNoise([n0, n1]); src.randn([1, 4, 8, 8]) // -> n0
 */
export interface NoiseSource {
  /** One draw of standard normal values for a tensor of `shape` (row-major). */
  randn(shape: number[]): Float32Array;
}

/** A k-diffusion denoiser: the sample x at noise level sigma in, the x0 estimate ("denoised") out. */
export type Denoiser = (x: Float32Array, sigma: number) => Promise<Float32Array>;

/** Per-step progress report shared by every sampler. */
export interface StepInfo {
  /** step index, 0-based */
  i: number;
  /** total number of steps */
  total: number;
  /** the sample before this step */
  x: Float32Array;
  /** the model's x0 estimate at this step */
  denoised: Float32Array;
  sigma: number;
}
export type OnStep = (info: StepInfo) => void | Promise<void>;

/**
 * Replays recorded noise arrays in order (fixtures, or noise captured from another run); throws when the
 * sampler asks for more draws than were recorded or for the wrong size, so a drawing-order bug cannot pass silently.
 */
export class QueuedNoise implements NoiseSource {
  private next = 0;
  constructor(private readonly draws: Float32Array[]) {}
  randn(shape: number[]): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1);
    if (this.next >= this.draws.length)
      throw new Error(`QueuedNoise: draw ${this.next} requested but only ${this.draws.length} recorded`);
    const d = this.draws[this.next++];
    if (d.length !== n)
      throw new Error(`QueuedNoise: draw ${this.next - 1} has ${d.length} values, shape [${shape}] needs ${n}`);
    return d;
  }
  /** how many draws were consumed so far */
  get used(): number {
    return this.next;
  }
}
