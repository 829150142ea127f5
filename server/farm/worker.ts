/**
 * A farm worker (`tcd-studio worker --queue redis://HOST:PORT [--device N] [--concurrency 1]`): takes prompts from
 * the BullMQ queues (checkpoint it holds first, see affinity.ts), runs them with the real executor and nodes, and
 * sends events and the result back through Redis. Jobs are fetched by hand (BullMQ's manual fetching) because a
 * worker chooses among several queues; it keeps each job's lock alive while it runs, so a killed worker's prompt is
 * moved back to waiting by another worker's stalled check and run again, or failed after `maxStalledCount` stalls.
 * Example:
 *   const w = await FarmWorker.start({ queue: 'redis://127.0.0.1:6379', modelsDir, outputDir, inputDir, tempDir,
 *     engine: { ep: 'cuda', dataDir, device: 1 } });
 *   ...; await w.close();
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { createRegistry } from '../../nodes/index.js';
import type { NodeServices } from '../../nodes/services.js';
import { Executor } from '../executor/execute.js';
import type { EngineOptions } from '../engine/engine.js';
import { event, type ExecutionErrorData, type ServerEvent } from '../../protocol/events.js';
import { runPrompt, type InvalidPrompt } from '../queue/run-prompt.js';
import { historyEntry, type HistoryEntry } from '../queue/store.js';
import { ModelFolders } from '../storage/model-folders.js';
import { makeServices } from '../host.js';
import { queueOrder, type QueueHead } from './affinity.js';
import { OutputPublisher } from './outputs.js';
import {
  KEYS,
  aliveWorkers,
  redisOptions,
  logRedisAvailability,
  type ControlMessage,
  type FarmMessage,
  type PromptJobData,
  type WorkerState,
} from './protocol.js';

export interface FarmWorkerOptions {
  queue: string;
  modelsDir: string;
  /** more model folders per kind (extra_model_paths.yaml), as the server has them */
  extraModelPaths?: Record<string, string[]>;
  /** the server's output and temp folders (shared); this worker stages inside them */
  outputDir: string;
  tempDir: string;
  inputDir: string;
  /** the engine's options (data folder, provider, GPU index, budgets); its log is the worker's */
  engine: EngineOptions;
  concurrency?: number;
  previews?: boolean;
  id?: string;
  /** model affinity on (default) or plain oldest-first */
  affinity?: boolean;
  maxWaitMs?: number;
  orphanGraceMs?: number;
  /** how many recent checkpoints count as held when the engine cannot report what it holds */
  keepModels?: number;
  lockMs?: number;
  stalledIntervalMs?: number;
  maxStalledCount?: number;
  pollMs?: number;
  /** log the queue order and every job taken */
  trace?: boolean;
  log?: (m: string) => void;
}

export class FarmWorker {
  readonly id: string;
  private readonly conn: Redis;
  private readonly sub: Redis;
  private readonly bullWorkers = new Map<string, Worker>();
  private readonly getters = new Map<string, Queue>();
  private readonly running = new Map<string, AbortController>();
  private loaded: string[] = [];
  private done = 0;
  private switches = 0;
  private lastCkpt: string | null = null;
  private closing = false;
  private handingBack = false;
  private loops: Promise<void>[] = [];
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly executor: Executor<NodeServices>;
  private readonly services: NodeServices;
  private readonly publisher: OutputPublisher;
  private readonly log: (m: string) => void;

  private constructor(readonly o: FarmWorkerOptions) {
    this.id = o.id ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;
    this.log = o.log ?? ((m) => console.log(`[worker ${this.id}] ${m}`));
    const r = redisOptions(o.queue);
    this.conn = new Redis(r);
    this.sub = new Redis(r);
    logRedisAvailability(this.conn, this.sub, o.queue, this.log, { prefix: '', announce: 'reconnect' });
    this.publisher = new OutputPublisher({ output: o.outputDir, temp: o.tempDir }, this.id);
    this.services = makeServices(
      new ModelFolders(o.modelsDir, o.extraModelPaths),
      { output: this.publisher.staging.output, input: o.inputDir, temp: this.publisher.staging.temp },
      { ...o.engine, log: this.log },
      o.previews !== false,
    );
    this.executor = new Executor(createRegistry(), this.services);
  }

  static async start(o: FarmWorkerOptions): Promise<FarmWorker> {
    const w = new FarmWorker(o);
    await w.sub.subscribe(KEYS.control);
    w.sub.on('message', (_c, raw) => w.onControl(raw));
    await w.beat();
    w.heartbeat = setInterval(() => {
      w.beat().catch(() => {});
    }, 1000);
    for (let i = 0; i < (o.concurrency ?? 1); i++) w.loops.push(w.slot());
    w.log(
      `ready: device ${o.engine.device ?? 'default'}, concurrency ${o.concurrency ?? 1}, checkpoints ${w.onDisk().join(', ') || 'none'}`,
    );
    return w;
  }

  state(): WorkerState {
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      device: this.o.engine.device === undefined ? null : String(this.o.engine.device),
      loaded: [...this.loaded],
      onDisk: this.onDisk(),
      running: [...this.running.keys()],
      concurrency: this.o.concurrency ?? 1,
      done: this.done,
      switches: this.switches,
      ts: Date.now(),
    };
  }

  /**
   * Stop taking prompts and leave the farm. Running prompts finish, or with `handBack` are stopped and put back in
   * the queue for another worker (what SIGTERM does), without the client seeing an interruption. While Redis is
   * unreachable it returns at once, running prompts aborted and left to the stalled check (the caller exits).
   */
  async close(handBack = false): Promise<void> {
    this.closing = true;
    if (this.conn.status !== 'ready') {
      // every Redis command waits for Redis to come back (that is how the worker rides out a restart), so waiting
      // for the slots or handing prompts back would hang the stop; nothing can be handed back without Redis: the
      // job's lock lapses and another worker's stalled check runs it again
      this.log('stopping while redis is unreachable: running prompts are left to the stalled check');
      this.handingBack = true;
      for (const a of this.running.values()) a.abort();
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.conn.disconnect();
      this.sub.disconnect();
      for (const w of this.bullWorkers.values()) w.disconnect().catch(() => {});
      return;
    }
    if (handBack) {
      this.handingBack = true;
      for (const a of this.running.values()) a.abort();
    }
    await Promise.all(this.loops);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.conn.hdel(KEYS.workers, this.id).catch(() => {});
    await Promise.all([...this.bullWorkers.values()].map((w) => w.close()));
    await Promise.all([...this.getters.values()].map((q) => q.close()));
    this.sub.disconnect();
    this.conn.disconnect();
    await this.services.engine().close();
  }

  private onDisk(): string[] {
    return this.services.models.list('checkpoints');
  }

  private async beat(): Promise<void> {
    await this.conn.hset(KEYS.workers, this.id, JSON.stringify(this.state()));
  }

  private onControl(raw: string): void {
    let m: ControlMessage;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (m.k !== 'interrupt') return;
    for (const [id, a] of this.running)
      if (m.promptId === null || m.promptId === id) {
        a.abort();
        this.log(`interrupt ${id}`);
      }
  }

  private bull(name: string): Worker {
    let w = this.bullWorkers.get(name);
    if (!w) {
      w = new Worker(name, null, {
        // ioredis' and BullMQ's RedisOptions types differ only in retryStrategy's signature
        connection: redisOptions(this.o.queue) as never,
        autorun: false,
        name: this.id,
        lockDuration: this.o.lockMs ?? 30000,
        stalledInterval: this.o.stalledIntervalMs ?? 15000,
        maxStalledCount: this.o.maxStalledCount ?? 1,
      });
      w.on('error', (e) => this.log(`bullmq ${name}: ${e.message}`));
      void w.startStalledCheckTimer();
      this.bullWorkers.set(name, w);
    }
    return w;
  }

  private getter(name: string): Queue {
    let q = this.getters.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.conn });
      this.getters.set(name, q);
    }
    return q;
  }

  /** Non-empty queues with the age of their oldest waiting prompt. */
  private async heads(): Promise<QueueHead[]> {
    const names = await this.conn.hgetall(KEYS.queues);
    const out: QueueHead[] = [];
    for (const [name, ckpt] of Object.entries(names)) {
      this.bull(name); // every worker runs the stalled check of every queue
      const [oldest] = await this.getter(name).getJobs(['wait'], -1, -1);
      if (oldest)
        out.push({
          name,
          ckpt,
          oldest: (oldest.data as PromptJobData).submitted ?? oldest.timestamp,
          number: (oldest.data as PromptJobData).number,
        });
    }
    return out;
  }

  private async next(token: string): Promise<{ job: Job; bull: Worker } | null> {
    const others = aliveWorkers(await this.conn.hgetall(KEYS.workers)).filter((w) => w.id !== this.id);
    const me = { id: this.id, loaded: this.loaded, onDisk: new Set(this.onDisk()) };
    const order = queueOrder(
      await this.heads(),
      me,
      others,
      {
        affinity: this.o.affinity !== false,
        maxWaitMs: this.o.maxWaitMs ?? 10000,
        orphanGraceMs: this.o.orphanGraceMs ?? 3000,
      },
      Date.now(),
    );
    if (this.o.trace) this.log(`order ${order.join(',')}`);
    for (const name of order) {
      const bull = this.bull(name);
      const job = await bull.getNextJob(token, { block: false });
      if (job && this.o.trace) this.log(`took ${job.id} (${(job.data as PromptJobData).number}) from ${name}`);
      if (job) return { job, bull };
    }
    return null;
  }

  private async slot(): Promise<void> {
    while (!this.closing) {
      const token = randomUUID();
      let got: { job: Job; bull: Worker } | null = null;
      try {
        got = await this.next(token);
      } catch (e) {
        this.log(`fetch: ${(e as Error).message}`);
      }
      if (!got) {
        await new Promise((r) => setTimeout(r, this.o.pollMs ?? 200));
        continue;
      }
      await this.process(got.job, token);
    }
  }

  private publish(m: FarmMessage): void {
    this.conn.publish(KEYS.events, JSON.stringify(m)).catch((e) => this.log(`publish: ${(e as Error).message}`));
  }

  private async process(job: Job, token: string): Promise<void> {
    const d = job.data as PromptJobData;
    if (job.deferredFailure) {
      // the stalled check marked it (stalled more than maxStalledCount); BullMQ's own processJob fails such jobs
      // unrun, and manual fetching must do the same; the server reports the failure to the client
      this.log(`prompt ${d.promptId} not run: ${job.deferredFailure}`);
      await job
        .moveToFailed(new UnrecoverableError(job.deferredFailure), token, false)
        .catch((e) => this.log(`fail ${d.promptId}: ${(e as Error).message}`));
      return;
    }
    const lockMs = this.o.lockMs ?? 30000;
    const renew = setInterval(
      () => {
        job.extendLock(token, lockMs).catch((e) => this.log(`lock ${d.promptId}: ${(e as Error).message}`));
      },
      Math.max(200, lockMs / 3),
    );
    const abort = new AbortController();
    this.running.set(d.promptId, abort);
    void this.beat();
    this.publish({ k: 'started', worker: this.id, promptId: d.promptId, attempt: job.attemptsStarted ?? 1 });
    const send = (ev: ServerEvent) =>
      this.publish({ k: 'event', worker: this.id, clientId: d.clientId, promptId: d.promptId, ev });
    let final: ServerEvent | null = null;
    let entry: HistoryEntry;
    try {
      const missing = this.missingModel(d);
      if (missing) {
        send(event('execution_error', missing));
        final = event('executing', { node: null, prompt_id: d.promptId });
        entry = historyEntry(d, {}, 'error', [['execution_error', missing]]);
      } else {
        const outcome = await runPrompt(
          this.executor,
          d,
          {
            signal: abort.signal,
            log: this.log,
            emit: (ev) => {
              if (ev.type === 'executed') this.publisher.publish(ev.data.output);
              if (ev.type === 'executing' && ev.data.node === null) {
                final = ev;
                return;
              } // sent after the result
              if (ev.type === 'execution_interrupted' && this.handingBack) return; // not the user's interrupt
              send(ev);
            },
            preview: (img, nodeId) =>
              this.publish({
                k: 'preview',
                worker: this.id,
                clientId: d.clientId,
                promptId: d.promptId,
                nodeId,
                format: img.format,
                b64: Buffer.from(img.bytes).toString('base64'),
              }),
          },
          { describeInvalid: (v) => this.invalidHere(d, v) },
        );
        if (outcome.result) {
          if (outcome.status === 'interrupted' && this.handingBack) {
            await job.moveToWait(token);
            this.log(`prompt ${d.promptId} handed back to the queue (worker stopping)`);
            return;
          }
          if (d.ckpt && d.ckpt !== this.lastCkpt) this.switches++;
          this.lastCkpt = d.ckpt ?? this.lastCkpt;
          for (const ui of Object.values(outcome.result.outputs)) this.publisher.publish(ui);
          if (d.ckpt)
            this.loaded = [...this.loaded.filter((c) => c !== d.ckpt), d.ckpt].slice(-(this.o.keepModels ?? 1));
          await this.syncLoaded();
        }
        entry = outcome.entry;
      }
      // completed in Redis and counted in the registry before the result is published, so a client that sees the
      // prompt finished also sees the count; a run whose lock lapsed (the job was taken back by a stalled check and
      // is run again elsewhere) still delivers its result but is not counted; the run that completes the job counts
      let completed = true;
      await job.moveToCompleted(entry, token, false).catch((e) => {
        completed = false;
        this.log(`prompt ${d.promptId}: lock lapsed, the job is run again elsewhere: ${(e as Error).message}`);
      });
      if (completed) {
        this.done++;
        await this.beat();
      }
      this.publish({ k: 'result', worker: this.id, promptId: d.promptId, entry, final });
    } catch (e) {
      this.log(`prompt ${d.promptId} failed outside any node: ${(e as Error).stack}`);
      await job.moveToFailed(e as Error, token, false).catch(() => {});
    } finally {
      clearInterval(renew);
      this.running.delete(d.promptId);
      void this.beat();
    }
  }

  /** What the engine really holds (its RAM budget may have evicted a model), checkpoint names in load order. */
  private async syncLoaded(): Promise<void> {
    try {
      const st = await this.services.engine().stats();
      const held: string[] = [];
      for (const key of st.loaded) {
        const path = (JSON.parse(key) as { checkpoint?: string }).checkpoint;
        const name = path && this.onDisk().find((n) => path === this.services.models.resolve('checkpoints', n));
        if (name && !held.includes(name)) held.push(name);
      }
      // the most recently used stays last, as the affinity ranking expects
      this.loaded = [...held.filter((c) => !this.loaded.includes(c)), ...this.loaded.filter((c) => held.includes(c))];
    } catch {
      /* engine stats unavailable: keep the recency list */
    }
  }

  /** A checkpoint this worker does not have, as the execution_error the client sees (null: it has it). */
  private missingModel(d: PromptJobData): ExecutionErrorData | null {
    if (!d.ckpt || this.onDisk().includes(d.ckpt)) return null;
    return {
      prompt_id: d.promptId,
      executed: [],
      traceback: [],
      current_inputs: {},
      current_outputs: {},
      timestamp: Date.now(),
      node_id: '',
      node_type: 'CheckpointLoaderSimple',
      exception_type: 'ModelNotOnWorker',
      exception_message: `worker ${this.id} (device ${this.o.engine.device ?? 'default'}) has no checkpoint '${d.ckpt}' in ${this.o.modelsDir}/checkpoints, and no live worker of the farm has it; copy it into every worker's models folder (or share that folder) and queue the prompt again`,
    };
  }

  /** A prompt that validated on the server but not here (other models or nodes on this worker). */
  private invalidHere(d: PromptJobData, v: InvalidPrompt): ExecutionErrorData {
    const [nodeId, ne] = Object.entries(v.body.node_errors)[0] ?? ['', undefined];
    return {
      prompt_id: d.promptId,
      executed: [],
      traceback: [],
      current_inputs: {},
      current_outputs: {},
      timestamp: Date.now(),
      node_id: nodeId,
      node_type: ne?.class_type ?? '',
      exception_type: 'InvalidOnWorker',
      exception_message: `worker ${this.id} cannot run this prompt: ${v.body.error.message}${ne ? `: ${ne.errors.map((x) => `${x.message} (${x.details})`).join('; ')}` : ''}`,
    };
  }
}
