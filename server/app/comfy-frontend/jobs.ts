/**
 * ComfyUI's /jobs view of the queue and history (its frontend reads both only through it):
 *   GET /jobs?status=in_progress,pending|completed,failed,cancelled&limit=N&offset=M&sort_order=desc|asc
 *     -> {jobs: [job], pagination: {offset, limit, total, has_more}}, newest first by default
 *   GET /jobs/{id} -> job + outputs + workflow ({prompt, extra_data}) ; 404 when unknown
 * job = {id, status, priority, create_time, execution_start_time?, execution_end_time?, preview_output?,
 *        outputs_count?, execution_error?, workflow_id?}; times in ms.
 */
import { Router, type Request, type Response } from 'express';
import { httpError } from '../../../protocol/errors.js';
import type { HistoryEntry, QueueItem } from '../../queue/store.js';

export const JOB_STATUSES = ['pending', 'in_progress', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export interface Job {
  id: string;
  status: JobStatus;
  priority: number;
  create_time: number;
  execution_start_time?: number | null;
  execution_end_time?: number | null;
  preview_output?: Record<string, unknown> | null;
  outputs_count?: number;
  execution_error?: Record<string, unknown> | null;
  workflow_id?: string | null;
}

/** What the routes read: the queue's running and pending items and its history. */
export interface JobSource {
  running(): QueueItem[];
  pending(): QueueItem[];
  historyItem(id: string): HistoryEntry | undefined;
  /** each history entry's id and row id (a rewritten entry gets a new row id) */
  historyKeys(): { id: string; rowid: number }[];
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function workflowId(extra: Record<string, unknown>): string | null {
  const wf = (extra.extra_pnginfo as { workflow?: { id?: unknown } } | undefined)?.workflow;
  return typeof wf?.id === 'string' ? wf.id : null;
}

function fromQueue(item: QueueItem, status: JobStatus): Job {
  return {
    id: item.promptId,
    status,
    priority: item.number,
    create_time: num(item.extraData.create_time) ?? 0,
    workflow_id: workflowId(item.extraData),
  };
}

/** Output items of one history entry, each with the node that made it and its media kind (images, gifs, ...). */
function outputItems(outputs: HistoryEntry['outputs']): Record<string, unknown>[] {
  const items: Record<string, unknown>[] = [];
  for (const [nodeId, out] of Object.entries(outputs)) {
    for (const [mediaType, list] of Object.entries(out ?? {})) {
      if (!Array.isArray(list)) continue;
      for (const it of list)
        if (it && typeof it === 'object' && 'filename' in it) items.push({ ...it, nodeId, mediaType });
    }
  }
  return items;
}

function fromHistory(id: string, e: HistoryEntry): Job {
  const msg = (type: string) => e.status.messages.find(([t]) => t === type)?.[1] as Record<string, unknown> | undefined;
  const err = msg('execution_error');
  const interrupted = msg('execution_interrupted');
  const end = msg('execution_success') ?? err ?? interrupted;
  const status: JobStatus = e.status.status_str === 'success' ? 'completed' : interrupted ? 'cancelled' : 'failed';
  const items = outputItems(e.outputs);
  const extra = (e.prompt[3] ?? {}) as Record<string, unknown>;
  const start = num(msg('execution_start')?.timestamp);
  return {
    id,
    status,
    priority: e.prompt[0],
    create_time: num(extra.create_time) ?? start ?? 0,
    execution_start_time: start ?? null,
    execution_end_time: num(end?.timestamp) ?? null,
    // a saved output before a temp preview, as ComfyUI picks the first output it finds
    preview_output: items.find((i) => i.type === 'output') ?? items[0] ?? null,
    outputs_count: items.length,
    execution_error: err
      ? { traceback: [], current_inputs: {}, current_outputs: {}, node_id: '', node_type: '', ...err }
      : null,
    workflow_id: workflowId(extra),
  };
}

/**
 * Summaries of finished jobs, kept between requests: ComfyUI's frontend asks for the job list after every `status`
 * message (the websocket keepalive sends one every few seconds to each idle tab), and parsing every history entry
 * (prompt + workflow, often tens of KB each) for each of those requests grew with the history without bound.
 * Only entries not seen yet are read; deleted ones are dropped.
 */
export class JobSummaries {
  private readonly byKey = new Map<string, Job>();

  finished(src: JobSource): Job[] {
    const keys = src.historyKeys();
    const live = new Set<string>();
    const jobs: Job[] = [];
    for (const { id, rowid } of keys) {
      const key = `${rowid}:${id}`;
      live.add(key);
      let job = this.byKey.get(key);
      if (!job) {
        const e = src.historyItem(id);
        if (!e) continue; // deleted since the keys were read
        job = fromHistory(id, e);
        this.byKey.set(key, job);
      }
      jobs.push(job);
    }
    for (const key of this.byKey.keys()) if (!live.has(key)) this.byKey.delete(key);
    return jobs;
  }
}

/** Every job the server knows, unsorted. */
export function allJobs(src: JobSource, summaries = new JobSummaries()): Job[] {
  return [
    ...src.running().map((i) => fromQueue(i, 'in_progress')),
    ...src.pending().map((i) => fromQueue(i, 'pending')),
    ...summaries.finished(src),
  ];
}

function parseIntParam(v: unknown, dflt: number | undefined, min: number): number | undefined | Error {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !/^\d{1,9}$/.test(v) || Number(v) < min)
    return new Error(`expected an integer >= ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

export function jobsRoutes(src: () => JobSource): Router {
  const r = Router();
  const summaries = new JobSummaries();
  r.get('/jobs', (req: Request, res: Response) => {
    const statusParam = typeof req.query.status === 'string' ? req.query.status : '';
    const wanted = statusParam
      ? statusParam
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [...JOB_STATUSES];
    const bad = wanted.filter((s) => !(JOB_STATUSES as readonly string[]).includes(s));
    if (bad.length) {
      res
        .status(400)
        .json(httpError('bad_request', `unknown job status ${bad.join(', ')} (${JOB_STATUSES.join(', ')})`));
      return;
    }
    const limit = parseIntParam(req.query.limit, undefined, 1);
    const offset = parseIntParam(req.query.offset, 0, 0);
    if (limit instanceof Error || offset instanceof Error) {
      res
        .status(400)
        .json(
          httpError('bad_request', `limit/offset: ${((limit instanceof Error ? limit : offset) as Error).message}`),
        );
      return;
    }
    const order = req.query.sort_order === 'asc' ? 1 : -1;
    if (req.query.sort_order !== undefined && req.query.sort_order !== 'asc' && req.query.sort_order !== 'desc') {
      res.status(400).json(httpError('bad_request', 'sort_order must be asc or desc'));
      return;
    }
    const jobs = allJobs(src(), summaries)
      .filter((j) => wanted.includes(j.status))
      .sort((a, b) => order * (a.create_time - b.create_time || a.priority - b.priority));
    const page = jobs.slice(offset!, limit === undefined ? undefined : offset! + limit);
    res.json({
      jobs: page,
      pagination: {
        offset,
        limit: limit ?? jobs.length,
        total: jobs.length,
        has_more: offset! + page.length < jobs.length,
      },
    });
  });
  r.get('/jobs/:id', (req: Request, res: Response) => {
    const id = String(req.params.id);
    const s = src();
    const e = s.historyItem(id);
    if (e) {
      res.json({
        ...fromHistory(id, e),
        outputs: e.outputs,
        workflow: { prompt: e.prompt[2], extra_data: e.prompt[3] },
      });
      return;
    }
    for (const [items, status] of [
      [s.running(), 'in_progress'],
      [s.pending(), 'pending'],
    ] as const) {
      const item = items.find((i) => i.promptId === id);
      if (item) {
        res.json({
          ...fromQueue(item, status),
          outputs: {},
          workflow: { prompt: item.prompt, extra_data: item.extraData },
        });
        return;
      }
    }
    res.status(404).json(httpError('not_found', `no job ${id}`));
  });
  return r;
}
