/**
 * The embedded backend of the queue: this process's executor runs the stored prompts one at a time (runPrompt),
 * events routed to the submitting client. Interrupt targets a prompt id (or whatever runs), so it never hits the
 * wrong prompt. Several runners can share one store (one per device, farm/multi-device.ts): store.take() is one
 * transaction, so two never take the same prompt.
 * Example: new PromptQueue(store, sink, log, (ctx) => new LocalRunner(ctx, executor))
 */
import { event } from '../../protocol/events.js';
import type { Executor } from '../executor/execute.js';
import type { ValidPrompt } from '../executor/validate.js';
import { historyEntry, type HistoryEntry, type QueueItem } from './store.js';
import { isDiskFull, DISK_FULL_MESSAGE } from '../storage/disk-full.js';
import { runPrompt } from './run-prompt.js';
import type { QueueBackend, QueueContext } from './prompt-queue.js';

export const CRASH_MESSAGE =
  'tcd-studio stopped while this prompt was running (crash or restart); it did not complete. Queue it again to re-run it.';

/** CRASH_MESSAGE naming the node that was running, when the store knows it. Example: crashMessage('8', 'VAEDecode') */
export function crashMessage(nodeId: string | null, nodeType: string): string {
  if (!nodeId) return CRASH_MESSAGE;
  const node = nodeType ? `node ${nodeId} (${nodeType})` : `node ${nodeId}`;
  return CRASH_MESSAGE.replace('was running', `was running ${node}`);
}

export class LocalRunner<S> implements QueueBackend {
  private current: { item: QueueItem; abort: AbortController } | null = null;
  private unfinished: { item: QueueItem; entry: HistoryEntry }[] = [];
  private wake: (() => void) | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;

  /** `validated`: validations from submit, by prompt id (shared by the runners of one store) */
  constructor(
    private readonly ctx: QueueContext,
    readonly executor: Executor<S>,
    private readonly validated = new Map<string, ValidPrompt>(),
  ) {}

  /** Prompts left running by a crash are reported as failed, with an event their client can replay. */
  recover(): string[] {
    const lost = this.ctx.store.running();
    for (const item of lost) {
      const nodeId = this.ctx.store.runningNode(item.promptId);
      const node = nodeId === null ? undefined : (item.prompt[nodeId] as { class_type?: unknown } | undefined);
      const nodeType = typeof node?.class_type === 'string' ? node.class_type : '';
      const data = {
        prompt_id: item.promptId,
        node_id: nodeId ?? '',
        node_type: nodeType,
        executed: [],
        exception_message: crashMessage(nodeId, nodeType),
        exception_type: 'ServerRestart',
        traceback: [],
        current_inputs: {},
        current_outputs: {},
        timestamp: Date.now(),
      };
      this.record(item, historyEntry(item, {}, 'error', [['execution_error', data]]));
      this.ctx.sink.send(event('execution_error', data), item.clientId, item.promptId);
      this.ctx.sink.send(event('executing', { node: null, prompt_id: item.promptId }), item.clientId, item.promptId);
      this.ctx.log(`prompt ${item.promptId} was running when the server stopped: reported as failed`);
    }
    return lost.map((i) => i.promptId);
  }

  /**
   * Moves a finished prompt to history; on a full disk it is kept here (still 'running' in the store) and stored by
   * the loop once space returns, so the result is neither lost nor allowed to crash the loop.
   */
  private record(item: QueueItem, entry: HistoryEntry): void {
    try {
      this.ctx.store.finish(item, entry);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.unfinished.push({ item, entry });
      this.ctx.log(`prompt ${item.promptId} finished but ${DISK_FULL_MESSAGE}; its result is kept until space returns`);
    }
  }

  /** Stores held results; true when none is left. */
  private flushUnfinished(): boolean {
    while (this.unfinished.length) {
      const { item, entry } = this.unfinished[0];
      try {
        this.ctx.store.finish(item, entry);
      } catch (e) {
        if (isDiskFull(e)) return false;
        throw e;
      }
      this.unfinished.shift();
    }
    return true;
  }

  private noteRunningNode(promptId: string, nodeId: string): void {
    try {
      this.ctx.store.setRunningNode(promptId, nodeId);
    } catch (e) {
      // only the crash report would lose the node's name: a full disk must not fail the prompt for it
      this.ctx.log(`prompt ${promptId}: the running node could not be recorded: ${(e as Error).message}`);
    }
  }

  submitted(item: QueueItem, o: { valid?: ValidPrompt }): void {
    if (o.valid) this.validated.set(item.promptId, o.valid);
    this.wake?.();
  }

  removed(): void {
    const pending = new Set(this.ctx.store.pending().map((i) => i.promptId));
    for (const id of this.validated.keys()) if (!pending.has(id)) this.validated.delete(id);
  }

  interrupt(promptId?: string): boolean {
    if (!this.current) return false;
    if (promptId && this.current.item.promptId !== promptId) return false;
    this.current.abort.abort();
    return true;
  }

  runningPromptId(): string | null {
    return this.current?.item.promptId ?? null;
  }
  idle(): boolean {
    return this.current === null;
  }

  start(): void {
    if (this.loop) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort.abort();
    this.wake?.();
    await this.loop;
    this.loop = null;
  }

  private async pause(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      this.wake = r;
      setTimeout(r, ms).unref();
    });
    this.wake = null;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let item: QueueItem | undefined;
      try {
        // results a full disk could not record come first; no new prompt starts until they are stored
        if (!this.flushUnfinished()) {
          await this.pause(1000);
          continue;
        }
        item = this.ctx.store.take();
      } catch (e) {
        // the loop never dies: a full disk (or any storage error) is waited out and retried
        this.ctx.log(`queue paused: ${isDiskFull(e) ? DISK_FULL_MESSAGE : (e as Error).message}`);
        await this.pause(1000);
        continue;
      }
      if (!item) {
        await this.pause(1000);
        continue;
      }
      await this.execute(item);
    }
  }

  private async execute(item: QueueItem): Promise<void> {
    const abort = new AbortController();
    this.current = { item, abort };
    this.ctx.statusChanged();
    const valid = this.validated.get(item.promptId);
    this.validated.delete(item.promptId);
    try {
      const { entry } = await runPrompt(
        this.executor,
        item,
        {
          emit: (ev) => {
            // the store remembers the node being run, so a crash report after restart can name it
            if (ev.type === 'executing' && ev.data.node) this.noteRunningNode(item.promptId, ev.data.node);
            this.ctx.sink.send(ev, item.clientId, item.promptId);
          },
          preview: (img, nodeId) =>
            this.ctx.sink.preview(img, { node_id: nodeId, prompt_id: item.promptId }, item.clientId),
          signal: abort.signal,
          log: this.ctx.log,
        },
        { valid },
      );
      this.record(item, entry);
    } catch (e) {
      // the executor reports node failures itself; this is a failure of the queue machinery
      this.ctx.log(`prompt ${item.promptId} failed outside any node: ${(e as Error).stack}`);
      try {
        this.record(
          item,
          historyEntry(item, {}, 'error', [
            ['execution_error', { prompt_id: item.promptId, exception_message: (e as Error).message }],
          ]),
        );
      } catch (e2) {
        this.ctx.log(`prompt ${item.promptId}: its failure could not be recorded: ${(e2 as Error).message}`);
      }
    } finally {
      this.current = null;
      this.ctx.statusChanged();
    }
  }
}
