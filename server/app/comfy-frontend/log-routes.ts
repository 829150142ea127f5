/**
 * The server output ComfyUI's frontend shows in its bottom panel (Logs tab), in ComfyUI's shapes:
 *   GET   /internal/logs            -> one string, each entry as "<time> - <text>"
 *   GET   /internal/logs/raw        -> {entries: [{t, m}], size: {cols, rows}}
 *   PATCH /internal/logs/subscribe  body {enabled, clientId} -> 200; while enabled that websocket client gets
 *         {type: 'logs', data: {entries: [new entry], size}} for each new entry
 */
import { Router, type Request, type Response } from 'express';
import { httpError } from '../../../protocol/errors.js';
import type { LogBuffer, LogEntry } from '../log-buffer.js';

/** A bound on subscriptions: clients that never unsubscribe (closed tabs) must not grow the set forever. */
const MAX_SUBSCRIBERS = 64;

/** Sends one unlogged message to a websocket client (dropped when it is not connected). */
export type SendToClient = (clientId: string, msg: { type: 'logs'; data: unknown }) => void;

function terminalSize(): { cols: number; rows: number } {
  return { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 };
}

export function logRoutes(logs: LogBuffer, sendTo: SendToClient): { router: Router; close(): void } {
  const r = Router();
  const subscribers = new Set<string>();
  const stop = logs.onEntry((e: LogEntry) => {
    if (!subscribers.size) return;
    const msg = { type: 'logs' as const, data: { entries: [e], size: terminalSize() } };
    for (const id of subscribers) sendTo(id, msg);
  });

  r.get('/internal/logs', (_req, res) => {
    res.json(
      logs
        .all()
        .map((e) => `${e.t} - ${e.m}`)
        .join(''),
    );
  });
  r.get('/internal/logs/raw', (_req, res) => {
    res.json({ entries: logs.all(), size: terminalSize() });
  });
  r.patch('/internal/logs/subscribe', (req: Request, res: Response) => {
    const body = (req.body ?? {}) as { enabled?: unknown; clientId?: unknown };
    if (typeof body.clientId !== 'string' || !body.clientId || typeof body.enabled !== 'boolean') {
      res.status(400).json(httpError('bad_request', 'expected {enabled: boolean, clientId: string}'));
      return;
    }
    if (!body.enabled) subscribers.delete(body.clientId);
    else {
      // the oldest subscription goes first (a Set iterates in insertion order)
      if (!subscribers.has(body.clientId) && subscribers.size >= MAX_SUBSCRIBERS)
        subscribers.delete(subscribers.values().next().value!);
      subscribers.add(body.clientId);
    }
    res.status(200).end();
  });
  return { router: r, close: stop };
}
