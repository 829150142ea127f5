/**
 * Test hooks for an Engine, kept out of its production API: crash or block its worker, read the worker's
 * environment, count worker starts. Only tests import this module.
 * Example:
 *   await assert.rejects(debugWorker(engine, 'exit'), /worker exited/);
 *   assert.equal(workerStarts(engine), 2);
 */
import { type Engine, workerClients } from './engine.js';
import type { WorkerEnvProbe } from './runtime/protocol.js';
import type { WorkerClient } from './runtime/worker-client.js';

function clientOf(engine: Engine): WorkerClient {
  const client = workerClients.get(engine);
  if (!client) throw new Error('not an Engine');
  return client;
}

/** Makes the worker exit, throw at its top level, or block its thread for `ms`. */
export function debugWorker(engine: Engine, action: 'exit' | 'throw' | 'block', ms = 0): Promise<unknown> {
  return clientOf(engine).call({ op: 'debug', action, ms });
}

/** The worker's pid, isolation and environment variable `name` (null when unset). */
export function debugWorkerEnv(engine: Engine, name: string): Promise<WorkerEnvProbe> {
  return clientOf(engine).call<WorkerEnvProbe>({ op: 'debug', action: 'env', name });
}

/** Workers started so far (a crash makes the next call start another). */
export function workerStarts(engine: Engine): number {
  return clientOf(engine).starts;
}
