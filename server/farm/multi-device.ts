/**
 * Embedded mode on a host with several GPUs (`serve --devices 0,1`): one LocalRunner and one executor (own engine)
 * per device over the same SQLite store; store.take() is one transaction, so two runners never take the same
 * prompt. Example:
 *   new PromptQueue(store, sink, log, (ctx) => new MultiDeviceBackend(ctx, ['0', '1'], (device) => new Executor(registry, servicesFor(device))))
 */
import type { Executor } from '../executor/execute.js';
import type { ValidPrompt } from '../executor/validate.js';
import type { QueueItem } from '../queue/store.js';
import type { QueueBackend, QueueContext } from '../queue/prompt-queue.js';
import { LocalRunner } from '../queue/local-runner.js';

export class MultiDeviceBackend<S> implements QueueBackend {
  readonly lanes: { device: string; runner: LocalRunner<S> }[];

  constructor(ctx: QueueContext, devices: string[], executorFor: (device: string) => Executor<S>) {
    const validated = new Map<string, ValidPrompt>(); // whichever lane takes a prompt finds its validation
    this.lanes = devices.map((device) => ({
      device,
      runner: new LocalRunner(
        { ...ctx, log: (m) => ctx.log(`[device ${device}] ${m}`) },
        executorFor(device),
        validated,
      ),
    }));
  }

  /** one runner reports what a crash left running (they share the store) */
  recover(): string[] {
    return this.lanes[0].runner.recover();
  }

  /** An idle lane is woken at once (the others poll every second). */
  submitted(item: QueueItem, o: { front: boolean; valid?: ValidPrompt }): void {
    (this.lanes.find((l) => l.runner.idle()) ?? this.lanes[0]).runner.submitted(item, o);
  }

  removed(): void {
    this.lanes[0].runner.removed();
  }

  interrupt(promptId?: string): boolean {
    let hit = false;
    for (const l of this.lanes) hit = l.runner.interrupt(promptId) || hit;
    return hit;
  }

  runningPromptId(): string | null {
    for (const l of this.lanes) {
      const id = l.runner.runningPromptId();
      if (id) return id;
    }
    return null;
  }

  /** Which device runs which prompt now. */
  runningByDevice(): Record<string, string | null> {
    return Object.fromEntries(this.lanes.map((l) => [l.device, l.runner.runningPromptId()]));
  }

  start(): void {
    for (const l of this.lanes) l.runner.start();
  }
  async stop(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.runner.stop()));
  }
}
