/**
 * Main-thread side of the engine worker: starts it on demand, matches replies to calls, and isolates crashes.
 * When the worker dies (uncaught throw, exit, out of memory, a killed or segfaulted child process), only the calls in
 * flight are rejected, each with an error naming its component; the next call starts a fresh worker (with empty
 * caches). The worker is a thread or a child process (worker-port.ts); the protocol is the same over both.
 * Example:
 *   const w = new WorkerClient(init, console.log, { mode: 'process', env: { TCD_X: '1' } });
 *   const out = await w.call<Tensor>({ op: 'vaeDecode', vae, z });
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  type Call,
  type CancelRequest,
  type Request,
  type Response,
  type StepProgress,
  type WorkerInit,
  describeCall,
  transferablesOf,
} from './protocol.js';
import { type WorkerHandle, type WorkerIsolation, checkIsolation, spawnWorkerHandle } from './worker-port.js';

export class EngineWorkerCrashed extends Error {
  constructor(what: string, reason: string) {
    super(`engine worker crashed while running the ${what}: ${reason}`);
    this.name = 'EngineWorkerCrashed';
  }
}

interface Pending {
  call: Call;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onProgress?: (p: StepProgress) => void;
  /** progress reports, then the call's settlement, waiting for their event-loop turn (see deliver) */
  turns: (() => void)[];
}

/**
 * Per-call extras: progress reports (sampling loops; posted by the worker without waiting for them) and cancellation
 * (a loop starts no UNet call after the cancel has reached the worker).
 */
export interface CallOptions {
  onProgress?: (p: StepProgress) => void;
  signal?: AbortSignal;
}

/**
 * The worker's file: worker.ts beside this module under tsx, worker.js in dist/. Prefers the sibling with this
 * module's own extension and falls back to the other one that exists.
 */
export function resolveWorkerFile(moduleUrl: string = import.meta.url): URL {
  const ownExt = moduleUrl.endsWith('.ts') ? '.ts' : '.js';
  const candidates = [ownExt, ownExt === '.ts' ? '.js' : '.ts'].map((ext) => new URL(`./worker${ext}`, moduleUrl));
  const found = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!found)
    throw new Error(`engine worker not found beside ${fileURLToPath(moduleUrl)} (looked for worker.ts and worker.js)`);
  return found;
}

export class WorkerClient {
  private worker: WorkerHandle | null = null;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  /** how many workers were started so far (a crash makes the next call start one more) */
  starts = 0;

  constructor(
    private init: WorkerInit,
    private log: (line: string) => void = console.log,
    private isolation: WorkerIsolation = { mode: 'thread' },
  ) {
    checkIsolation(isolation); // at construction rather than at the first call
  }

  /**
   * Sends a call. Its Float32Arrays are transferred to a thread (copied to a process): pass arrays you own (the
   * Engine copies caller data first).
   */
  call<T>(call: Call, opts: CallOptions = {}): Promise<T> {
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    worker.ref(); // keep the process alive while work is in flight, not while idle
    const promise = new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        call,
        resolve: resolve as (v: unknown) => void,
        reject,
        onProgress: opts.onProgress,
        turns: [],
      });
      const req: Request = { id, call };
      try {
        worker.postMessage(req, transferablesOf(call));
      } catch (e) {
        this.pending.delete(id);
        reject(e as Error);
      }
    });
    const signal = opts.signal;
    if (signal) {
      const cancel = () => {
        if (this.worker === worker && this.pending.has(id)) worker.postMessage({ cancel: id } satisfies CancelRequest);
      };
      if (signal.aborted) cancel();
      else {
        signal.addEventListener('abort', cancel, { once: true });
        void promise.then(
          () => signal.removeEventListener('abort', cancel),
          () => signal.removeEventListener('abort', cancel),
        );
      }
    }
    return promise;
  }

  get running(): boolean {
    return this.worker !== null;
  }
  get inFlight(): number {
    return this.pending.size;
  }
  /** the worker child's pid in 'process' isolation while one runs; undefined otherwise */
  get pid(): number | undefined {
    return this.worker?.pid;
  }

  private start(): WorkerHandle {
    const file = resolveWorkerFile();
    const w = spawnWorkerHandle(file, this.init, this.isolation);
    this.starts++;
    this.worker = w;
    this.ready.set(w, new Promise<void>((resolve) => this.settled.set(w, resolve)));
    w.on('message', (msg: Response) => {
      if (msg.id === null) {
        if ('ready' in msg) this.settled.get(w)?.();
        else this.log(msg.log);
        return;
      }
      const p = this.pending.get(msg.id);
      if (!p) return;
      if ('progress' in msg) {
        const report = msg.progress;
        this.deliver(p, () => {
          try {
            p.onProgress?.(report);
          } catch (e) {
            this.log(`engine: a progress handler threw: ${(e as Error).message}`);
          }
        });
        return;
      }
      this.pending.delete(msg.id);
      if (this.pending.size === 0) w.unref();
      const settle = msg.ok
        ? () => p.resolve(msg.result)
        : () => p.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name, stack: msg.error.stack }));
      if (p.turns.length) this.deliver(p, settle);
      else settle();
    });
    w.on('error', (err) => this.crashed(w, err.message));
    w.on('exit', (code, signal) => {
      this.settled.get(w)?.();
      this.crashed(w, signal ? `worker process was killed by ${signal}` : `worker exited with code ${code}`);
    });
    return w;
  }

  /**
   * Runs `fn` in its own event-loop turn after the call's earlier reports. A loop posts its steps without waiting,
   * and a port hands every queued message over in one go: handlers that take longer than a step (a preview's JPEG)
   * would otherwise hold the main thread, timers and sockets included (an interrupt!), until the loop ends.
   */
  private deliver(p: Pending, fn: () => void): void {
    p.turns.push(fn);
    if (p.turns.length > 1) return;
    const next = () => {
      p.turns[0]?.();
      p.turns.shift();
      if (p.turns.length) setImmediate(next);
    };
    setImmediate(next);
  }

  /** Rejects the calls in flight on `w`, once, and forgets it so the next call starts a fresh worker. */
  private crashed(w: WorkerHandle, reason: string): void {
    if (this.worker !== w) return;
    this.worker = null;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const p of calls) {
      p.turns.length = 0; // reports not yet handed over are dropped: the call fails now
      p.reject(new EngineWorkerCrashed(describeCall(p.call), reason));
    }
    if (calls.length)
      this.log(
        `engine: worker crashed (${reason}); ${calls.length} call(s) failed, the next call starts a fresh worker`,
      );
    void w.terminate();
  }

  /** per worker: resolves its `ready` promise (provider settled, or the worker exited) */
  private settled = new WeakMap<WorkerHandle, () => void>();
  private ready = new WeakMap<WorkerHandle, Promise<void>>();

  /**
   * Stops the worker; calls still in flight are rejected. A worker thread still probing its GPU provider gets up to
   * 10 s to finish that first: terminating a thread inside Dawn's start-up aborts the whole process. (A child
   * process is simply killed.)
   */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const p of calls) {
      p.turns.length = 0;
      p.reject(new Error(`engine closed while running the ${describeCall(p.call)}`));
    }
    if (this.isolation.mode === 'thread') {
      w.ref();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.ready.get(w),
        new Promise<void>((r) => {
          timer = setTimeout(r, 10000);
        }),
      ]);
      clearTimeout(timer);
    }
    await w.terminate();
  }
}
