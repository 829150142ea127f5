/**
 * The API server's side of a farm (`serve --queue redis://HOST:PORT`): prompts go to BullMQ queues (one per
 * checkpoint, see protocol.ts) instead of the embedded executor; worker processes run them. The SQLite store stays
 * the server's record: a prompt is written there before POST /prompt answers, pushed to BullMQ (job id = prompt
 * id, so pushing twice is harmless), and moved to history when the worker's result arrives. Worker events reach
 * the websocket hub through Redis pub/sub; a once-a-second sync against BullMQ's job states catches what pub/sub
 * cannot promise (a result sent while the server was down, a prompt that failed after its stall retries).
 * Example:
 *   startServer({ ...cfg, queueBackend: (ctx) => new RedisBackend(ctx, { url: 'redis://127.0.0.1:6379' }) });
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { event } from '../../protocol/events.js';
import type { QueueBackend, QueueContext } from '../queue/prompt-queue.js';
import { historyEntry, type HistoryEntry, type QueueItem } from '../queue/store.js';
import {
  KEYS,
  checkpointOf,
  queueNameFor,
  redisOptions,
  redactedUrl,
  logRedisAvailability,
  aliveWorkers,
  type ControlMessage,
  type FarmMessage,
  type PromptJobData,
  type WorkerState,
} from './protocol.js';

export interface RedisQueueOptions {
  url: string;
  /** how often job states are checked against BullMQ (ms) */
  syncMs?: number;
  /** finished jobs kept in Redis so a restarted server can still collect their results */
  keepFinished?: number;
}

export class RedisBackend implements QueueBackend {
  private readonly conn: Redis;
  private readonly sub: Redis;
  private readonly queues = new Map<string, Queue>();
  /** prompt ids known to be in BullMQ */
  private readonly pushed = new Set<string>();
  /** prompt id -> worker id, for prompts a worker has started */
  private readonly active = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private syncing = false;
  private started = false;
  /** the Redis URL without its password, for logs */
  private readonly where: string;

  private readonly store: QueueContext['store'];
  private readonly sink: QueueContext['sink'];
  private readonly log: QueueContext['log'];
  private readonly statusChanged: () => void;

  constructor(
    ctx: QueueContext,
    readonly opts: RedisQueueOptions,
  ) {
    ({ store: this.store, sink: this.sink, log: this.log, statusChanged: this.statusChanged } = ctx);
    const o = redisOptions(opts.url);
    this.conn = new Redis({ ...o, lazyConnect: true });
    this.sub = new Redis({ ...o, lazyConnect: true });
    this.where = redactedUrl(opts.url);
    logRedisAvailability(this.conn, this.sub, opts.url, this.log, {
      prefix: 'farm queue: ',
      announce: 'every-connect',
    });
  }

  /** Nothing is failed at start-up: workers may still be running what SQLite lists as running; sync() decides. */
  recover(): string[] {
    return [];
  }

  submitted(item: QueueItem, o: { front: boolean }): void {
    this.push(item, o.front).catch((e) =>
      this.log(`queue ${item.promptId} on redis failed (retried by sync): ${(e as Error).message}`),
    );
  }

  /** Deleting or clearing pending prompts (POST /queue) removes them from SQLite; their jobs go on the next sync. */
  removed(): void {
    if (this.started) this.sync().catch(() => {});
  }

  interrupt(promptId?: string): boolean {
    if (promptId && !this.active.has(promptId)) return false;
    if (!promptId && this.active.size === 0) return false;
    const msg: ControlMessage = { k: 'interrupt', promptId: promptId ?? null };
    this.conn
      .publish(KEYS.control, JSON.stringify(msg))
      .catch((e) => this.log(`interrupt not sent: ${(e as Error).message}`));
    return true;
  }

  runningPromptId(): string | null {
    return this.active.keys().next().value ?? null;
  }

  /**
   * Connects without waiting: while Redis is down ioredis keeps retrying and holds commands, so the subscription,
   * pushes and syncs go through once it is up (a server started before Redis must not give up on it).
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const c of [this.conn, this.sub]) c.connect().catch(() => {}); // failures are logged by the 'error' handler
    this.sub.on('message', (_ch, raw) => this.onMessage(raw));
    this.sub.subscribe(KEYS.events).catch((e) => this.log(`farm queue: subscribe: ${(e as Error).message}`));
    const sync = () => {
      this.sync().catch((e) => this.log(`farm sync: ${(e as Error).message}`));
    };
    sync();
    this.timer = setInterval(sync, this.opts.syncMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.started = false;
    if (this.timer) clearInterval(this.timer);
    // a sync waiting for an unreachable Redis ends when the connections close below
    for (let t = 0; this.syncing && t < 100; t++) await new Promise((r) => setTimeout(r, 20));
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => {})));
    this.sub.disconnect();
    this.conn.disconnect();
  }

  /** Workers alive now (for /system_stats and tests). */
  async workers(): Promise<WorkerState[]> {
    return aliveWorkers(await this.conn.hgetall(KEYS.workers));
  }

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.conn });
      this.queues.set(name, q);
    }
    return q;
  }

  /** Pushes run one after another, so each BullMQ list holds its prompts in submission order. */
  private pushChain: Promise<void> = Promise.resolve();
  private push(item: QueueItem, front = false): Promise<void> {
    const p = this.pushChain.then(() => this.pushNow(item, front));
    this.pushChain = p.catch(() => {});
    return p;
  }

  private async pushNow(item: QueueItem, front: boolean): Promise<void> {
    const ckpt = checkpointOf(item.prompt);
    const name = queueNameFor(ckpt);
    await this.conn.hset(KEYS.queues, name, ckpt ?? '');
    const data: PromptJobData = { ...item, ckpt, submitted: Date.now() };
    const keep = this.opts.keepFinished ?? 1000;
    await this.queue(name).add('prompt', data, {
      jobId: item.promptId,
      lifo: front,
      removeOnComplete: { count: keep },
      removeOnFail: { count: keep },
    });
    this.pushed.add(item.promptId);
  }

  private onMessage(raw: string): void {
    let m: FarmMessage;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    // another API server on the same Redis sees this channel too: its prompts are not ours to relay or record
    if (!this.mine(m.promptId)) return;
    if (m.k === 'event') this.sink.send(m.ev, m.clientId, m.promptId);
    else if (m.k === 'preview')
      this.sink.preview(
        { format: m.format, bytes: Buffer.from(m.b64, 'base64') },
        { node_id: m.nodeId, prompt_id: m.promptId },
        m.clientId,
      );
    else if (m.k === 'started') this.markRunning(m.promptId, m.worker);
    else if (m.k === 'result') this.finish(m.promptId, m.entry, m.final);
  }

  private mine(promptId: string): boolean {
    return this.pushed.has(promptId) || this.active.has(promptId) || this.queued(promptId) !== undefined;
  }

  private markRunning(promptId: string, worker: string): void {
    if (this.active.get(promptId) === worker) return;
    this.active.set(promptId, worker);
    this.store.markRunning(promptId);
    this.log(`prompt ${promptId} started on worker ${worker}`);
    this.statusChanged();
  }

  private queued(promptId: string): QueueItem | undefined {
    return (
      this.store.running().find((i) => i.promptId === promptId) ??
      this.store.pending().find((i) => i.promptId === promptId)
    );
  }

  /** History first, then the prompt's last event, so a client that reads history on `executing null` finds it. */
  private finish(promptId: string, entry: HistoryEntry, final: ReturnType<typeof event> | null): void {
    const item = this.queued(promptId);
    this.active.delete(promptId);
    this.pushed.delete(promptId);
    if (!item && this.store.historyItem(promptId)) return; // already collected (pub/sub and sync both saw it)
    const [number, , prompt, extra, outputs] = entry.prompt;
    const clientId = (extra.client_id as string | null | undefined) ?? null;
    this.store.finish(item ?? { number, promptId, prompt, extraData: extra, outputs, clientId }, entry);
    this.sink.send(final ?? event('executing', { node: null, prompt_id: promptId }), clientId, promptId);
    this.statusChanged();
  }

  private failed(item: QueueItem, reason: string, attempts: number): void {
    const data = {
      prompt_id: item.promptId,
      node_id: '',
      node_type: '',
      executed: [],
      exception_type: 'WorkerLost',
      traceback: [],
      current_inputs: {},
      current_outputs: {},
      timestamp: Date.now(),
      exception_message: `the farm could not run this prompt: ${reason} (started ${attempts} time(s); a worker was killed or stopped answering each time)`,
    };
    this.sink.send(event('execution_error', data), item.clientId, item.promptId);
    this.finish(item.promptId, historyEntry(item, {}, 'error', [['execution_error', data]]), null);
  }

  /** One log line when prompts wait and no worker is alive, one when a worker is back (an idle farm says nothing). */
  private workerless = false;
  private async warnIfNoWorker(queued: number): Promise<void> {
    if (queued === 0) return;
    const none = (await this.workers()).length === 0;
    if (none && !this.workerless)
      this.log(
        `farm queue: ${queued} prompt(s) waiting and no worker is connected to redis ${this.where}; ` +
          `start one: tcd-studio worker --queue ${this.where}`,
      );
    else if (!none && this.workerless) this.log('farm queue: a worker is connected again');
    this.workerless = none;
  }

  /** Push what is not on Redis yet, collect finished jobs, drop jobs whose prompt was deleted. */
  private async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      const items = [...this.store.running(), ...this.store.pending()];
      for (const item of items) {
        const q = this.queue(queueNameFor(checkpointOf(item.prompt)));
        const job = await q.getJob(item.promptId);
        if (!job) {
          await this.push(item);
          continue;
        }
        this.pushed.add(item.promptId);
        const state = await job.getState();
        if (state === 'completed') this.finish(item.promptId, job.returnvalue as HistoryEntry, null);
        else if (state === 'failed')
          this.failed(item, job.failedReason ?? 'failed', job.attemptsStarted ?? job.attemptsMade);
        else if (state === 'active' && !this.active.has(item.promptId))
          this.markRunning(item.promptId, job.processedBy ?? '?');
      }
      await this.warnIfNoWorker(items.length);
      // read the store again: a prompt submitted while this sync awaited Redis is pushed but not in `items`
      const live = new Set([...this.store.running(), ...this.store.pending()].map((i) => i.promptId));
      for (const id of [...this.pushed]) {
        if (live.has(id)) continue;
        this.pushed.delete(id);
        for (const q of this.queues.values()) {
          const job = await q.getJob(id);
          if (job && (await job.getState()) !== 'active') {
            await job.remove().catch(() => {});
            this.log(`prompt ${id} deleted from the queue: job removed`);
          }
        }
      }
    } finally {
      this.syncing = false;
    }
  }
}
