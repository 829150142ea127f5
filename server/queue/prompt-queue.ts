/**
 * The queue the HTTP routes and the websocket hub talk to: prompts, their order, history and status, persisted in
 * SQLite (store.ts) before POST /prompt answers. Who runs the prompts is a QueueBackend behind one interface:
 *   - the embedded runner (local-runner.ts): this process's executor takes them one at a time;
 *   - one runner per local GPU (farm/multi-device.ts, `serve --devices 0,1`);
 *   - Redis/BullMQ (farm/redis-queue.ts, `serve --queue redis://...`): worker processes run them.
 * Routes never see the store; backends use it (take, finish, mark running) through their QueueContext.
 * Example:
 *   const queue = new PromptQueue(store, sink, log, (ctx) => new LocalRunner(ctx, executor));
 *   queue.recover(); queue.start();
 *   const { prompt_id } = queue.submit({ prompt, extraData: {}, clientId: null, outputs: v.outputs, valid: v });
 */
import { randomUUID } from 'node:crypto';
import { event, type ServerEvent } from '../../protocol/events.js';
import type { PreviewImage } from '../../protocol/preview.js';
import type { Prompt } from '../executor/prompt.js';
import type { ValidPrompt } from '../executor/validate.js';
import type { HistoryEntry, QueueItem, QueueStore } from './store.js';

export interface EventSink {
  /** an event for one client (null = everyone) */
  send(ev: ServerEvent, clientId: string | null, promptId: string | null): void;
  preview(img: PreviewImage, meta: { node_id: string; prompt_id: string }, clientId: string | null): void;
}

/** What a backend gets from its queue: the store it runs prompts from, where events go, and a status nudge. */
export interface QueueContext {
  store: QueueStore;
  sink: EventSink;
  log: (m: string) => void;
  /** queue_remaining (or what runs) changed: tell the clients */
  statusChanged(): void;
}

/** Runs the prompts of a queue: locally, on several devices, or through a farm. */
export interface QueueBackend {
  /** after an unclean stop: settle prompts the store lists as running; returns the ids reported as failed */
  recover(): string[];
  /** a prompt was stored; `valid` is its validation when the submitter has it (run it without validating again) */
  submitted(item: QueueItem, o: { front: boolean; valid?: ValidPrompt }): void;
  /** pending prompts were deleted from the store */
  removed(): void;
  /** interrupt the running prompt; with an id, only that one. Returns whether something was interrupted. */
  interrupt(promptId?: string): boolean;
  /** a prompt running now (the first, when several run) */
  runningPromptId(): string | null;
  start(): void;
  stop(): Promise<void>;
}

export interface SubmitRequest {
  prompt: Prompt | Record<string, unknown>;
  extraData: Record<string, unknown>;
  clientId: string | null;
  outputs: string[];
  promptId?: string;
  number?: number;
  front?: boolean;
  valid?: ValidPrompt;
}

export class PromptQueue<B extends QueueBackend = QueueBackend> {
  readonly backend: B;

  constructor(
    private readonly store: QueueStore,
    private readonly sink: EventSink,
    log: (m: string) => void,
    backend: (ctx: QueueContext) => B,
  ) {
    this.backend = backend({ store, sink, log, statusChanged: () => this.broadcastStatus() });
  }

  recover(): string[] {
    return this.backend.recover();
  }
  start(): void {
    this.backend.start();
  }
  stop(): Promise<void> {
    return this.backend.stop();
  }

  submit(p: SubmitRequest): { prompt_id: string; number: number } {
    const promptId = p.promptId ?? randomUUID();
    const number = p.number ?? this.store.nextNumber(!!p.front);
    const item: QueueItem = {
      number,
      promptId,
      prompt: p.prompt as Record<string, unknown>,
      extraData: p.extraData,
      outputs: p.outputs,
      clientId: p.clientId,
    };
    this.store.enqueue(item);
    this.broadcastStatus();
    this.backend.submitted(item, { front: !!p.front, valid: p.valid });
    return { prompt_id: promptId, number };
  }

  /** whether a prompt id is taken (queued or in history) */
  has(promptId: string): boolean {
    return this.store.has(promptId);
  }
  remaining(): number {
    return this.store.pendingCount();
  }
  pending(): QueueItem[] {
    return this.store.pending();
  }
  running(): QueueItem[] {
    return this.store.running();
  }

  snapshot(): { queue_running: unknown[]; queue_pending: unknown[] } {
    const asRow = (i: QueueItem) => [
      i.number,
      i.promptId,
      i.prompt,
      { ...i.extraData, client_id: i.clientId },
      i.outputs,
    ];
    return { queue_running: this.running().map(asRow), queue_pending: this.pending().map(asRow) };
  }

  /** Deletes pending prompts, all or some (running ones stay: interrupt them), then tells the clients once. */
  removePending(o: { all?: boolean; ids?: string[] }): number {
    const n = (o.all ? this.store.clearPending() : 0) + (o.ids?.length ? this.store.deletePending(o.ids) : 0);
    this.backend.removed();
    this.broadcastStatus();
    return n;
  }

  interrupt(promptId?: string): boolean {
    return this.backend.interrupt(promptId);
  }
  runningPromptId(): string | null {
    return this.backend.runningPromptId();
  }

  history(maxItems?: number, offset = -1): Record<string, HistoryEntry> {
    return this.store.history(maxItems, offset);
  }
  /** history() a page of [prompt_id, entry JSON] at a time (for streaming); call until it returns null */
  historyPages(maxItems?: number, offset = -1): () => [string, string][] | null {
    return this.store.historyPages(maxItems, offset);
  }
  historyItem(promptId: string): HistoryEntry | undefined {
    return this.store.historyItem(promptId);
  }
  historyKeys(): { id: string; rowid: number }[] {
    return this.store.historyKeys();
  }
  deleteHistory(ids: string[]): void {
    this.store.deleteHistory(ids);
  }
  clearHistory(): void {
    this.store.clearHistory();
  }

  broadcastStatus(): void {
    this.sink.send(event('status', { status: { exec_info: { queue_remaining: this.remaining() } } }), null, null);
  }
}
