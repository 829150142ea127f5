/**
 * GPU memory in use, sampled from nvidia-smi while the bench runs (Node cannot ask WebGPU or CUDA for it). Peak is
 * reported relative to what was in use before the bench started, so other processes' memory is left out as far as
 * one card's total allows. Without nvidia-smi every reading is null.
 * Example:
 *   const probe = await GpuMemoryProbe.start(250);
 *   ...work...
 *   const { peakMiB, baselineMiB } = await probe.stop();
 */
import { execFile } from 'node:child_process';

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
        const v = Number(String(stdout).trim().split('\n')[0]);
        resolve(Number.isFinite(v) ? v : null);
      },
    );
  });
}

export class GpuMemoryProbe {
  private peak: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  private constructor(readonly baselineMiB: number | null) {
    this.peak = baselineMiB;
  }

  /** Starts sampling every `intervalMs` (no sampling when nvidia-smi is absent). */
  static async start(intervalMs = 250): Promise<GpuMemoryProbe> {
    const probe = new GpuMemoryProbe(await readUsedMiB());
    if (probe.baselineMiB !== null) {
      probe.timer = setInterval(() => {
        probe.inFlight = probe.sample();
      }, intervalMs);
      probe.timer.unref();
    }
    return probe;
  }

  private async sample(): Promise<void> {
    const v = await readUsedMiB();
    if (v !== null && (this.peak === null || v > this.peak)) this.peak = v;
  }

  /** One reading now (also folded into the peak). */
  async now(): Promise<number | null> {
    if (this.baselineMiB === null) return null;
    await this.sample();
    return readUsedMiB();
  }

  async stop(): Promise<{ baselineMiB: number | null; peakMiB: number | null; peakAboveBaselineMiB: number | null }> {
    if (this.timer) clearInterval(this.timer);
    await this.inFlight;
    if (this.baselineMiB !== null) await this.sample();
    const above = this.peak !== null && this.baselineMiB !== null ? this.peak - this.baselineMiB : null;
    return { baselineMiB: this.baselineMiB, peakMiB: this.peak, peakAboveBaselineMiB: above };
  }
}
