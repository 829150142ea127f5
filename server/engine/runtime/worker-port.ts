/**
 * The transport between the Engine and its worker, in either isolation mode:
 * - 'thread': a worker_threads Worker (buffers transferred, shared process and C environment);
 * - 'process': a child_process.fork'ed Node process with its own environment variables, so settings read by native
 *   code at start-up (e.g. a Vulkan layer that pins WebGPU to one GPU) apply to it alone, and a native crash
 *   (segfault) kills only the child. Messages use the 'advanced' (structured clone) serialization, so Float32Arrays
 *   and Infinity survive; they are copied, never transferred.
 * Both sides see the same small surface, so WorkerClient and worker.ts do not care which one they run over.
 * Example (parent):
 *   const h = spawnWorkerHandle(resolveWorkerFile(), init, { isolation: 'process', env: { TCD_X: '1' } });
 *   h.on('message', (m) => ...); h.postMessage(req, transferablesOf(req)); await h.terminate();
 * Example (worker): const { port, init } = openWorkerPort(); port.on('message', ...); port.postMessage(res);
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import type { WorkerInit } from './protocol.js';
import { ortRedirectImport } from './cuda-ort.js';

export type IsolationMode = 'thread' | 'process';

/** How an engine's worker is isolated: a thread, or a child process with extra environment variables. */
export interface WorkerIsolation {
  mode: IsolationMode;
  env?: Record<string, string>;
  /** 'process' only: the onnxruntime-node package folder the child imports instead of the resolved one (cuda-ort.ts) */
  ortPackage?: string;
  /**
   * 'process' only: the child's memory limit. Its JS heap is capped with --max-old-space-size and the parent kills it
   * when its resident size (native ONNX Runtime buffers included) passes this, so a runaway prompt costs only the
   * engine, never the server (the kernel's OOM killer would pick the whole server otherwise).
   */
  maxRssBytes?: number;
}

/**
 * Parent-side handle on a running worker. Events: 'message' (msg), 'error' (Error: an uncaught throw in the worker),
 * 'exit' (code: number | null, signal: string | null), once, after every message the worker sent has arrived.
 */
export interface WorkerHandle {
  readonly mode: IsolationMode;
  /** the child's pid ('process'), undefined for a thread */
  readonly pid: number | undefined;
  postMessage(msg: unknown, transfer?: ArrayBuffer[]): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- messages are the protocol's, typed by the caller
  on(event: 'message', fn: (msg: any) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  on(event: 'exit', fn: (code: number | null, signal: string | null) => void): this;
  /** ends the worker at once (a blocked thread or process included); resolves once it is gone */
  terminate(): Promise<void>;
  /** keep the parent process alive while the worker runs something / let it exit while idle */
  ref(): void;
  unref(): void;
}

/** Worker-side port: the parentPort of a thread, or process.send / process.on('message') of a child. */
export interface WorkerPort {
  postMessage(msg: unknown, transfer?: ArrayBuffer[]): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- messages are the protocol's, typed by the caller
  on(event: 'message', fn: (msg: any) => void): void;
}

/** A child's start message: the first message it receives carries its WorkerInit (structured clone keeps Infinity). */
interface InitMessage {
  tcdEngineWorkerInit: WorkerInit;
}
const isInit = (m: unknown): m is InitMessage => !!m && typeof m === 'object' && 'tcdEngineWorkerInit' in m;
/** A transport-level message from the child: its uncaught error, sent just before it exits (a thread's 'error'). */
interface FatalMessage {
  tcdEngineWorkerFatal: { name: string; message: string; stack?: string };
}
const isFatal = (m: unknown): m is FatalMessage => !!m && typeof m === 'object' && 'tcdEngineWorkerFatal' in m;

/** Starts the worker file in the given isolation. `file` is worker.ts (under tsx) or worker.js (dist/). */
export function spawnWorkerHandle(
  file: URL,
  init: WorkerInit,
  isolation: WorkerIsolation = { mode: 'thread' },
): WorkerHandle {
  checkIsolation(isolation);
  if (isolation.mode === 'process')
    return new ProcessHandle(file, init, isolation.env ?? {}, isolation.ortPackage, isolation.maxRssBytes);
  return new ThreadHandle(spawnThread(file, init));
}

/** Throws for settings no worker can honour: extra env for a thread (it shares the server's C environment). */
export function checkIsolation(isolation: WorkerIsolation): void {
  if (isolation.mode !== 'thread' && isolation.mode !== 'process') {
    throw new Error(`engine: isolation must be 'thread' or 'process', got "${String(isolation.mode)}"`);
  }
  if (isolation.mode === 'thread' && isolation.ortPackage) {
    throw new Error("engine: a pinned onnxruntime-node (ortPackage) needs isolation 'process'");
  }
  if (isolation.mode === 'thread' && isolation.env && Object.keys(isolation.env).length) {
    throw new Error(
      "engine: env (extra environment variables for the worker) needs isolation 'process'; a worker thread shares the server's environment",
    );
  }
}

/**
 * Starts the worker file as a thread. A compiled .js worker starts directly. A .ts worker (running under tsx) needs
 * tsx's loader inside the worker, and Node 20 does not apply the parent's `--import tsx` hooks to a worker's entry
 * module, so a two-line ESM bootstrap registers tsx there first and then imports the worker.
 */
function spawnThread(file: URL, workerData: unknown): Worker {
  if (!file.pathname.endsWith('.ts')) return new Worker(file, { workerData });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(file.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

class ThreadHandle extends EventEmitter implements WorkerHandle {
  readonly mode = 'thread';
  readonly pid = undefined;
  constructor(private w: Worker) {
    super();
    w.on('message', (m) => this.emit('message', m));
    w.on('error', (e) => this.emit('error', e instanceof Error ? e : new Error(String(e))));
    w.on('exit', (code) => this.emit('exit', code, null));
  }
  postMessage(msg: unknown, transfer?: ArrayBuffer[]): void {
    this.w.postMessage(msg, transfer);
  }
  async terminate(): Promise<void> {
    await this.w.terminate();
  }
  ref(): void {
    this.w.ref();
  }
  unref(): void {
    this.w.unref();
  }
}

class ProcessHandle extends EventEmitter implements WorkerHandle {
  readonly mode = 'process';
  private child: ChildProcess;
  private exited: Promise<void>;
  private killing = false;

  private watchdog: NodeJS.Timeout | null = null;

  constructor(file: URL, init: WorkerInit, env: Record<string, string>, ortPackage?: string, maxRssBytes?: number) {
    super();
    // Explicit execArgv: the parent's own flags (--test, --inspect, ...) must not leak into the worker. A .ts worker
    // needs tsx's loader, resolved from this module so it is found whatever the cwd.
    const execArgv = file.pathname.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
    if (ortPackage) execArgv.push('--import', ortRedirectImport(ortPackage)); // CUDA's pinned onnxruntime-node
    // the JS heap gets the limit too, with a floor: tensors live off-heap, so the watchdog below is what usually acts
    if (maxRssBytes) execArgv.push(`--max-old-space-size=${Math.max(256, Math.floor(maxRssBytes / 2 ** 20))}`);
    this.child = fork(fileURLToPath(file), [], {
      execArgv,
      env: { ...process.env, ...env },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    // 'close' rather than 'exit': it comes after the IPC channel is drained, so a fatal error sent just before the
    // child died has been seen (and a crash never outruns the results that preceded it).
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        if (this.watchdog) clearInterval(this.watchdog);
        this.emit('exit', code, signal);
        resolve();
      }),
    );
    if (maxRssBytes) this.watchdog = this.watch(maxRssBytes);
    this.child.on('message', (m) => {
      if (!isFatal(m)) {
        this.emit('message', m);
        return;
      }
      const f = m.tcdEngineWorkerFatal;
      this.emit('error', Object.assign(new Error(f.message), { name: f.name, stack: f.stack }));
    });
    // the start message goes first; the child reads its IPC channel from its first 'message' listener on, in order
    this.child.send({ tcdEngineWorkerInit: init } satisfies InitMessage);
    // spawn failure, or a send to a child that is gone: the child ends (or never started), 'close' follows
    this.child.on('error', (e) => {
      this.emit('error', e);
      if (!this.killing) {
        this.killing = true;
        this.child.kill('SIGKILL');
      } // once: a failing kill reports here too
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Polls the child's resident size (Linux /proc) and kills it past `limit`, reporting why as an 'error'. */
  private watch(limit: number): NodeJS.Timeout | null {
    const pid = this.child.pid;
    if (!pid || !existsSync(`/proc/${pid}/status`)) return null;
    const t = setInterval(() => {
      let rss = 0;
      try {
        rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0) * 1024;
      } catch {
        return;
      }
      if (rss <= limit || this.killing) return;
      const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
      this.emit(
        'error',
        new Error(
          `the engine process used ${mib(rss)}, over its memory limit of ${mib(limit)} (TCD_ENGINE_MAX_RSS_MB): it was stopped`,
        ),
      );
      this.killing = true;
      this.child.kill('SIGKILL');
    }, 100);
    t.unref();
    return t;
  }

  postMessage(msg: unknown): void {
    // structured clone copies the buffers; the transfer list of the thread has no meaning here
    if (this.child.connected) this.child.send(msg as object);
  }

  async terminate(): Promise<void> {
    // SIGKILL, like Worker.terminate: it also ends a child stuck in native code; libuv reaps it (no zombie)
    if (this.child.exitCode === null && this.child.signalCode === null && !this.killing) {
      this.killing = true;
      this.child.kill('SIGKILL');
    }
    this.ref(); // an idle (unref'd) child would let the loop end before its exit is seen
    await this.exited;
  }

  ref(): void {
    this.child.ref();
    this.child.channel?.ref();
  }
  unref(): void {
    this.child.unref();
    this.child.channel?.unref();
  }
}

/**
 * The worker's side: in a thread, parentPort and workerData; in a child process, process.send and the WorkerInit from
 * its start message (calls that arrive meanwhile wait for the port's listener). In a child, an uncaught error is
 * reported to the parent before the process exits, and the child exits when the parent goes away (no orphan keeps a
 * GPU busy).
 */
export async function openWorkerPort(): Promise<{ port: WorkerPort; init: WorkerInit; mode: IsolationMode }> {
  if (parentPort) {
    const p = parentPort;
    return {
      port: {
        postMessage: (m, t) => {
          if (t) p.postMessage(m, t);
          else p.postMessage(m);
        },
        on: (e, fn) => {
          p.on(e, fn);
        },
      },
      init: workerData as WorkerInit,
      mode: 'thread',
    };
  }
  const send = process.send?.bind(process);
  if (!send) throw new Error('engine worker must run in a worker thread or a child process started by WorkerClient');
  process.on('disconnect', () => process.exit(0));
  process.on('uncaughtException', (err) => {
    const e = err instanceof Error ? err : new Error(String(err));
    const fatal: FatalMessage = { tcdEngineWorkerFatal: { name: e.name, message: e.message, stack: e.stack } };
    try {
      send(fatal, undefined, {}, () => process.exit(1));
    } catch {
      process.exit(1);
    }
  });
  const early: unknown[] = [];
  const handlers: ((m: unknown) => void)[] = [];
  const init = await new Promise<WorkerInit>((resolveInit) => {
    process.on('message', (m) => {
      if (isInit(m)) {
        resolveInit(m.tcdEngineWorkerInit);
        return;
      }
      if (handlers.length) for (const h of handlers) h(m);
      else early.push(m);
    });
  });
  const on = (_e: 'message', fn: (m: unknown) => void) => {
    handlers.push(fn);
    for (const m of early.splice(0)) fn(m);
  };
  return {
    port: {
      postMessage: (m) => {
        if (process.connected) send(m as object);
      },
      on,
    },
    init,
    mode: 'process',
  };
}
