/**
 * GPU memory in use, sampled from nvidia-smi while the bench runs (Node cannot ask WebGPU or CUDA for it). Peak is
 * reported relative to what was in use before the bench started, so other processes' memory is left out as far as
 * one card's total allows. Without nvidia-smi every reading is null.
 * Example:
 *   const probe = await GpuMemoryProbe.start(250);
 *   ...work...
 *   const afterLoadMiB = probe.aboveBaseline(await probe.now());
 *   const { peakMiB, baselineMiB } = await probe.stop();
 */
import { execFile } from 'node:child_process';

/** MiB used, from `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits` output: its first line. */
export function parseUsedMiB(stdout: string): number | null {
  const first = stdout.trim().split('\n')[0].trim();
  if (!/^\d+(\.\d+)?$/.test(first)) return null; // e.g. '[N/A]' or an error text
  return Number(first);
}

function readUsedMiB(): Promise<number | null> {
  return new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0'],
      { timeout: 5000 },
      (err, stdout) => {
        if (err) {
          resolve(null);
          return;
        }
        resolve(parseUsedMiB(String(stdout)));
      },
    );
  });
}

export class GpuMemoryProbe {
  private peak: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly baselineMiB: number | null,
    private read: () => Promise<number | null>,
  ) {
    this.peak = baselineMiB;
  }

  /**
   * Starts sampling every `intervalMs` (no sampling when nvidia-smi is absent). `read` replaces nvidia-smi (tests on
   * machines without one).
   */
  static async start(intervalMs = 250, read = readUsedMiB): Promise<GpuMemoryProbe> {
    const probe = new GpuMemoryProbe(await read(), read);
    if (probe.baselineMiB !== null) {
      probe.timer = setInterval(() => {
        probe.inFlight = probe.sample();
      }, intervalMs);
      probe.timer.unref();
    }
    return probe;
  }

  private async sample(): Promise<number | null> {
    const v = await this.read();
    if (v !== null && (this.peak === null || v > this.peak)) this.peak = v;
    return v;
  }

  /** One reading now (also folded into the peak); null without nvidia-smi. */
  async now(): Promise<number | null> {
    if (this.baselineMiB === null) return null;
    return this.sample();
  }

  /** A reading less the pre-run one (null when either is missing). */
  aboveBaseline(usedMiB: number | null): number | null {
    return usedMiB !== null && this.baselineMiB !== null ? usedMiB - this.baselineMiB : null;
  }

  async stop(): Promise<{ baselineMiB: number | null; peakMiB: number | null; peakAboveBaselineMiB: number | null }> {
    if (this.timer) clearInterval(this.timer);
    await this.inFlight;
    if (this.baselineMiB !== null) await this.sample();
    return { baselineMiB: this.baselineMiB, peakMiB: this.peak, peakAboveBaselineMiB: this.aboveBaseline(this.peak) };
  }
}
