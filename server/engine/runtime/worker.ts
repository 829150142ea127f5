/**
 * The engine worker: every ONNX Runtime call happens here, because onnxruntime-node's session.run blocks the thread
 * it runs on. It runs as a worker thread or as a child process (worker-port.ts picks the port). Calls are handled
 * one at a time in arrival order (one set of CPU threads, one cache); results go back with their Float32Array
 * buffers transferred (thread) or copied (process).
 * Started by WorkerClient with a WorkerInit; not imported by anything else.
 */
import type { Call, Request, Response, StepProgress, WorkerEnvProbe, WorkerMessage } from './protocol.js';
import { transferablesOf } from './protocol.js';
import { SessionStore } from './session-store.js';
import { runComponentCall } from './components.js';
import { closeControlNets } from './control-residuals.js';
import { releaseLoopSessions, runTcdLoop } from './tcd-loop.js';
import { runKSamplerLoop } from './ksampler-loop.js';
import { deviceTensors } from './device-tensors.js';
import { clearLoraSessions } from '../lora/session.js';
import { openWorkerPort } from './worker-port.js';
import { saveCheckpoint } from '../model/checkpoint-save.js';
import { decodeTaesdPreview } from './components.js';
import type { SessionStore as Store } from './session-store.js';

const { port, init, mode } = await openWorkerPort();
const log = (line: string) => port.postMessage({ id: null, log: line } satisfies Response);
const store = SessionStore.start(init, log);
/** the store once settled (the cancel handler records on it synchronously) */
let settledStore: Store | null = null;
// tells the client when the provider probe is over: stopping a thread inside it (Dawn's start-up) aborts the process
void store.then(
  (s) => {
    settledStore = s;
    port.postMessage({ id: null, ready: true } satisfies Response);
  },
  () => port.postMessage({ id: null, ready: true } satisfies Response),
);

let queue: Promise<void> = Promise.resolve();
/**
 * calls asked to stop; a cancel is handled as it arrives (not queued), and loops check it before each UNet call (they
 * let the event loop turn once per step so that this handler gets to run)
 */
const cancelled = new Set<number>();
port.on('message', (msg: WorkerMessage) => {
  if ('cancel' in msg) {
    cancelled.add(msg.cancel);
    settledStore?.recordRun('cancel', 0); // its arrival on the worker timeline: tests check no UNet call follows it
    return;
  }
  // the exit hook acts on arrival, like a real crash, even while a sampling loop holds the queue
  if (msg.call.op === 'debug' && msg.call.action === 'exit') {
    void handle(msg);
    return;
  }
  queue = queue.then(() => handle(msg));
});

async function handle(req: Request): Promise<void> {
  try {
    const result = await dispatch(req);
    const res: Response = { id: req.id, ok: true, result };
    port.postMessage(res, transferablesOf(result));
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const res: Response = { id: req.id, ok: false, error: { name: err.name, message: err.message, stack: err.stack } };
    port.postMessage(res);
  } finally {
    cancelled.delete(req.id);
  }
}

async function dispatch(req: Request): Promise<unknown> {
  const call: Call = req.call;
  if (call.op === 'debug') {
    if (call.action === 'env')
      return { pid: process.pid, isolation: mode, value: process.env[call.name] ?? null } satisfies WorkerEnvProbe;
    return debug(call.action, call.ms ?? 0);
  }
  const s = await store;
  switch (call.op) {
    case 'free':
      await s.free();
      clearLoraSessions();
      closeControlNets();
      await releaseLoopSessions();
      await deviceTensors(s).release();
      return null;
    case 'stats':
      return s.stats();
    case 'sampleTcd':
      return runTcdLoop(s, call, withTaesdPreviews(s, call.previewDecoder, progressFor(req.id)), () =>
        cancelled.has(req.id),
      );
    case 'sampleK':
      return runKSamplerLoop(s, call, withTaesdPreviews(s, call.previewDecoder, progressFor(req.id)), () =>
        cancelled.has(req.id),
      );
    case 'saveCheckpoint':
      return saveCheckpoint((path) => s.checkpoint(path), call.spec);
    default:
      return runComponentCall(s, call);
  }
}

/**
 * A sampling loop's step report for call `id`: posted, never waited for (the loop goes on at once; port messages
 * keep their order, so every report reaches the main thread before the call's result).
 */
function progressFor(id: number): (p: StepProgress) => void {
  return (p) => port.postMessage({ id, progress: p } satisfies Response, transferablesOf(p));
}

/**
 * With a TAESD preview decoder, each step's preview latent is decoded here, beside the loop, and travels as an
 * image instead (the main thread could not ask the worker to decode while the loop holds it).
 */
function withTaesdPreviews(
  s: Store,
  decoder: string | undefined,
  send: (p: StepProgress) => void,
): (p: StepProgress) => void | Promise<void> {
  if (!decoder) return send;
  return async (p) => {
    if (!p.preview) return send(p);
    const previewImage = await decodeTaesdPreview(s, decoder, p.preview);
    return send({ step: p.step, total: p.total, previewImage });
  };
}

function debug(action: 'exit' | 'throw' | 'block', ms: number): Promise<null> | null {
  if (action === 'exit') process.exit(7); // ends only the worker: its thread, or its child process
  if (action === 'throw') {
    // the call never answers: the uncaught error takes the worker down while the call is in flight
    return new Promise<null>(() =>
      setImmediate(() => {
        throw new Error('debug: uncaught error at the top level of the engine worker');
      }),
    );
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); // holds the worker like a long session.run
  return null;
}
