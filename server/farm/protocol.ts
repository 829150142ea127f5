/**
 * What the API server and the workers of a farm agree on: Redis key names, the BullMQ queue for each checkpoint,
 * the job payload and the pub/sub messages. Example:
 *   const conn = redisOptions('redis://10.0.0.5:6379');
 *   const name = queueNameFor(checkpointOf(prompt));   // 'tcd-ckpt-1f0c...' or 'tcd-any'
 */
import { createHash } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import type { ServerEvent } from '../../protocol/events.js';
import type { HistoryEntry, QueueItem } from '../queue/store.js';

/** Redis keys outside BullMQ's own (`bull:<queue>:*`). */
export const KEYS = {
  /** hash queueName -> checkpoint name ('' for tcd-any): the queues workers look at */
  queues: 'tcd:queues',
  /** hash workerId -> JSON WorkerState, refreshed every heartbeat */
  workers: 'tcd:workers',
  /** pub/sub: worker -> server, FarmMessage */
  events: 'tcd:events',
  /** pub/sub: server -> workers, ControlMessage */
  control: 'tcd:control',
} as const;

export const ANY_QUEUE = 'tcd-any';

/** One BullMQ queue per checkpoint, so a worker can take the prompts of a model it holds first. */
export function queueNameFor(ckpt: string | null): string {
  if (!ckpt) return ANY_QUEUE;
  return `tcd-ckpt-${createHash('sha1').update(ckpt).digest('hex').slice(0, 16)}`;
}

/** The checkpoint a prompt loads (the first checkpoint loader by node id), null when it loads none. */
export function checkpointOf(prompt: Record<string, unknown>): string | null {
  const ids = Object.keys(prompt).sort();
  for (const id of ids) {
    const n = prompt[id] as { class_type?: string; inputs?: Record<string, unknown> } | undefined;
    const name = n?.inputs?.ckpt_name;
    if (n && /CheckpointLoader/.test(String(n.class_type)) && typeof name === 'string') return name;
  }
  return null;
}

/** ioredis options from `redis://[user:pass@]host:port[/db]`. BullMQ needs maxRetriesPerRequest null. */
export function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new Error(`--queue expects redis://HOST:PORT, got ${url}`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`--queue ${url}: database must be a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}

/** The URL as logs show it: a password in it becomes `***`. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Logs a farm process's Redis connections as two events, not one line per reconnection attempt: once when Redis is
 * lost (ioredis keeps retrying and holds commands meanwhile) and once when it answers again (`announce:
 * 'every-connect'` also says so on the first connection). The subscriber goes to the same Redis, so its errors, which
 * would only repeat these, are swallowed (an ioredis client without an 'error' listener would crash the process).
 */
export function logRedisAvailability(
  conn: Redis,
  sub: Redis,
  url: string,
  log: (m: string) => void,
  o: { prefix: string; announce: 'every-connect' | 'reconnect' },
): void {
  const where = redactedUrl(url);
  let up = true;
  conn.on('error', (e) => {
    if (up) log(`${o.prefix}redis ${where}: ${e.message} (retrying until it answers)`);
    up = false;
  });
  conn.on('ready', () => {
    if (!up) log(`${o.prefix}connected to redis ${where} again`);
    else if (o.announce === 'every-connect') log(`${o.prefix}connected to redis ${where}`);
    up = true;
  });
  sub.on('error', () => {});
}

/** BullMQ job data: the queue item as the server stored it, with its checkpoint and submission time. */
export interface PromptJobData extends QueueItem {
  ckpt: string | null;
  submitted: number;
}

/** What a worker advertises every heartbeat. */
export interface WorkerState {
  id: string;
  host: string;
  pid: number;
  device: string | null;
  /** checkpoints this worker has used recently and keeps in memory, most recent last */
  loaded: string[];
  /** checkpoints in this worker's models/checkpoints */
  onDisk: string[];
  /** prompt ids running here */
  running: string[];
  concurrency: number;
  /** jobs finished; model switches: jobs whose checkpoint differs from the previous job's here (the first counts) */
  done: number;
  switches: number;
  ts: number;
}

/** Worker -> server, in order on one channel, so `result` always follows the prompt's events. */
export type FarmMessage =
  | { k: 'event'; worker: string; clientId: string | null; promptId: string; ev: ServerEvent }
  | {
      k: 'preview';
      worker: string;
      clientId: string | null;
      promptId: string;
      nodeId: string;
      format: 'jpeg' | 'png';
      b64: string;
    }
  | { k: 'started'; worker: string; promptId: string; attempt: number }
  | { k: 'result'; worker: string; promptId: string; entry: HistoryEntry; final: ServerEvent | null };

/** Server -> workers. A null promptId interrupts whatever runs (ComfyUI's global interrupt). */
export type ControlMessage = { k: 'interrupt'; promptId: string | null };

/** A worker counts as alive while its heartbeat is younger than this. */
export const WORKER_TTL_MS = 5000;

export function aliveWorkers(all: Record<string, string>, now = Date.now()): WorkerState[] {
  const out: WorkerState[] = [];
  for (const v of Object.values(all)) {
    try {
      const w = JSON.parse(v) as WorkerState;
      if (now - w.ts < WORKER_TTL_MS) out.push(w);
    } catch {
      /* foreign value */
    }
  }
  return out;
}
