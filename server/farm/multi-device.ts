/**
 * Embedded mode on a host with several GPUs (`serve --devices 0,1`): one PromptQueue loop and one executor (own
 * engine) per device over the same SQLite store; store.take() is one transaction, so two loops never take the same
 * prompt. This facade gives the server the single-queue interface it expects. Example:
 *   queueBackend: (ctx) => new MultiDeviceQueue(ctx, ['0', '1'], (device) => new Executor(registry, servicesFor(device)))
 */
import { PromptQueue, type EventSink } from '../queue/prompt-queue.js';
import type { Executor } from '../executor/execute.js';
import type { QueueStore } from '../queue/store.js';

export class MultiDeviceQueue<S> extends PromptQueue<S> {
  readonly lanes: { device: string; queue: PromptQueue<S> }[];

  constructor(ctx: { store: QueueStore; sink: EventSink; log: (m: string) => void }, devices: string[], executorFor: (device: string) => Executor<S>) {
    const lanes = devices.map((device) => ({ device, queue: new PromptQueue(ctx.store, executorFor(device), ctx.sink, (m) => ctx.log(`[device ${device}] ${m}`)) }));
    super(ctx.store, lanes[0].queue.executor, ctx.sink, ctx.log);
    this.lanes = lanes;
  }

  /** Submitting through an idle lane wakes it at once (the others poll every second). */
  override submit(p: Parameters<PromptQueue<S>['submit']>[0]): { prompt_id: string; number: number } {
    const idle = this.lanes.find((l) => l.queue.runningPromptId() === null) ?? this.lanes[0];
    return idle.queue.submit(p);
  }

  override interrupt(promptId?: string): boolean {
    let hit = false;
    for (const l of this.lanes) hit = l.queue.interrupt(promptId) || hit;
    return hit;
  }

  override runningPromptId(): string | null {
    for (const l of this.lanes) { const id = l.queue.runningPromptId(); if (id) return id; }
    return null;
  }

  /** Which device runs which prompt now. */
  runningByDevice(): Record<string, string | null> {
    return Object.fromEntries(this.lanes.map((l) => [l.device, l.queue.runningPromptId()]));
  }

  override start(): void { for (const l of this.lanes) l.queue.start(); }
  override async stop(): Promise<void> { await Promise.all(this.lanes.map((l) => l.queue.stop())); }
}
