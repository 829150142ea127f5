/**
 * The embedded queue: prompts persisted in SQLite, executed one at a time by the executor, events routed to the
 * submitting client. Interrupt targets a prompt id (or whatever runs), so it never hits the wrong prompt.
 */
import { randomUUID } from 'node:crypto';
import { event, type ServerEvent } from '../../protocol/events.js';
import type { PreviewImage } from '../../protocol/preview.js';
import type { Executor } from '../executor/execute.js';
import { validatePrompt } from '../executor/validate.js';
import type { Prompt } from '../executor/prompt.js';
import { historyEntry, type HistoryEntry, type QueueItem, type QueueStore } from './store.js';
import { isDiskFull, DISK_FULL_MESSAGE } from '../storage/disk-full.js';

export interface EventSink {
  /** an event for one client (null = everyone) */
  send(ev: ServerEvent, clientId: string | null, promptId: string | null): void;
  preview(img: PreviewImage, meta: { node_id: string; prompt_id: string }, clientId: string | null): void;
}

export const CRASH_MESSAGE = 'tcd-studio stopped while this prompt was running (crash or restart); it did not complete. Queue it again to re-run it.';

export class PromptQueue<S> {
  private current: { item: QueueItem; abort: AbortController } | null = null;
  private unfinished: { item: QueueItem; entry: HistoryEntry }[] = [];
  private wake: (() => void) | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  onIdle: (() => void) | null = null;

  constructor(readonly store: QueueStore, readonly executor: Executor<S>, readonly sink: EventSink, readonly log: (m: string) => void = () => {}) {}

  /**
   * Moves a finished prompt to history; on a full disk it is kept here (still 'running' in the store) and stored by
   * the loop once space returns, so the result is neither lost nor allowed to crash the loop.
   */
  private record(item: QueueItem, entry: HistoryEntry): void {
    try { this.store.finish(item, entry); } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.unfinished.push({ item, entry });
      this.log(`prompt ${item.promptId} finished but ${DISK_FULL_MESSAGE}; its result is kept until space returns`);
    }
  }

  /** Stores held results; true when none is left. */
  private flushUnfinished(): boolean {
    while (this.unfinished.length) {
      const { item, entry } = this.unfinished[0];
      try { this.store.finish(item, entry); } catch (e) {
        if (isDiskFull(e)) return false;
        throw e;
      }
      this.unfinished.shift();
    }
    return true;
  }

  /** Prompts left running by a crash are reported as failed, with an event their client can replay. */
  recover(): string[] {
    const lost = this.store.running();
    for (const item of lost) {
      const data = { prompt_id: item.promptId, node_id: '', node_type: '', executed: [], exception_message: CRASH_MESSAGE, exception_type: 'ServerRestart', traceback: [], current_inputs: {}, current_outputs: {}, timestamp: Date.now() };
      this.record(item, historyEntry(item, {}, 'error', [['execution_error', data]]));
      this.sink.send(event('execution_error', data), item.clientId, item.promptId);
      this.sink.send(event('executing', { node: null, prompt_id: item.promptId }), item.clientId, item.promptId);
      this.log(`prompt ${item.promptId} was running when the server stopped: reported as failed`);
    }
    return lost.map((i) => i.promptId);
  }

  submit(p: { prompt: Prompt; extraData: Record<string, unknown>; clientId: string | null; outputs: string[]; promptId?: string; number?: number; front?: boolean }): { prompt_id: string; number: number } {
    const promptId = p.promptId ?? randomUUID();
    const number = p.number ?? this.store.nextNumber(!!p.front);
    this.store.enqueue({ number, promptId, prompt: p.prompt, extraData: p.extraData, outputs: p.outputs, clientId: p.clientId });
    this.broadcastStatus();
    this.wake?.();
    return { prompt_id: promptId, number };
  }

  remaining(): number { return this.store.pendingCount(); }

  broadcastStatus(): void {
    this.sink.send(event('status', { status: { exec_info: { queue_remaining: this.remaining() } } }), null, null);
  }

  snapshot(): { queue_running: unknown[]; queue_pending: unknown[] } {
    const asRow = (i: QueueItem) => [i.number, i.promptId, i.prompt, { ...i.extraData, client_id: i.clientId }, i.outputs];
    return { queue_running: this.store.running().map(asRow), queue_pending: this.store.pending().map(asRow) };
  }

  /** Interrupt the running prompt; with an id, only if that prompt is the one running. */
  interrupt(promptId?: string): boolean {
    if (!this.current) return false;
    if (promptId && this.current.item.promptId !== promptId) return false;
    this.current.abort.abort();
    return true;
  }

  runningPromptId(): string | null { return this.current?.item.promptId ?? null; }

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
    await new Promise<void>((r) => { this.wake = r; setTimeout(r, ms).unref(); });
    this.wake = null;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let item: QueueItem | undefined;
      try {
        // results a full disk could not record come first; no new prompt starts until they are stored
        if (!this.flushUnfinished()) { await this.pause(1000); continue; }
        item = this.store.take();
      } catch (e) {
        // the loop never dies: a full disk (or any storage error) is waited out and retried
        this.log(`queue paused: ${isDiskFull(e) ? DISK_FULL_MESSAGE : (e as Error).message}`);
        await this.pause(1000);
        continue;
      }
      if (!item) {
        this.onIdle?.();
        await this.pause(1000);
        continue;
      }
      await this.execute(item);
    }
  }

  private async execute(item: QueueItem): Promise<void> {
    const abort = new AbortController();
    this.current = { item, abort };
    this.broadcastStatus();
    const send = (ev: ServerEvent) => this.sink.send(ev, item.clientId, item.promptId);
    try {
      const v = validatePrompt(item.prompt, this.executor.registry, this.executor.services, item.outputs.length ? item.outputs : undefined);
      if (!v.ok) {
        const data = { prompt_id: item.promptId, node_id: Object.keys(v.body.node_errors)[0] ?? '', node_type: '', executed: [], exception_message: `${v.body.error.message}: ${v.body.error.details}`, exception_type: v.body.error.type, traceback: [], current_inputs: {}, current_outputs: {}, timestamp: Date.now() };
        send(event('execution_error', data));
        send(event('executing', { node: null, prompt_id: item.promptId }));
        this.record(item, historyEntry(item, {}, 'error', [['execution_error', data]]));
        return;
      }
      const result = await this.executor.run(
        { promptId: item.promptId, prompt: item.prompt as Prompt, extraData: item.extraData, outputs: v.outputs, constants: v.constants },
        { emit: send, preview: (img, nodeId) => this.sink.preview(img, { node_id: nodeId, prompt_id: item.promptId }, item.clientId), signal: abort.signal, log: this.log },
      );
      this.record(item, historyEntry(item, result.outputs, result.status === 'success' ? 'success' : 'error', result.messages));
    } catch (e) {
      // the executor reports node failures itself; this is a failure of the queue machinery
      this.log(`prompt ${item.promptId} failed outside any node: ${(e as Error).stack}`);
      try {
        this.record(item, historyEntry(item, {}, 'error', [['execution_error', { prompt_id: item.promptId, exception_message: (e as Error).message }]]));
      } catch (e2) { this.log(`prompt ${item.promptId}: its failure could not be recorded: ${(e2 as Error).message}`); }
    } finally {
      this.current = null;
      this.broadcastStatus();
    }
  }
}
