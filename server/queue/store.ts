/**
 * Durable queue, history and event log in SQLite (better-sqlite3, WAL). A prompt is written before POST /prompt
 * answers, so a kill -9 loses nothing: pending prompts run after restart, and the one that was running is recorded
 * as failed with a message saying so. Events are logged per client with a sequence number for replay.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface QueueItem {
  number: number;
  promptId: string;
  prompt: Record<string, unknown>;
  extraData: Record<string, unknown>;
  outputs: string[];
  clientId: string | null;
}

export interface HistoryEntry {
  prompt: [number, string, Record<string, unknown>, Record<string, unknown>, string[]];
  outputs: Record<string, Record<string, unknown>>;
  status: { status_str: 'success' | 'error'; completed: boolean; messages: [string, unknown][] };
  meta: Record<string, { node_id: string; display_node: string; parent_node: null; real_node_id: string }>;
}

/**
 * The history entry of a finished queue item, in ComfyUI's /history shape (the embedded queue and farm workers both
 * write it). Example: historyEntry(item, result.outputs, 'success', result.messages)
 */
export function historyEntry(
  item: QueueItem,
  outputs: HistoryEntry['outputs'],
  status: 'success' | 'error',
  messages: [string, unknown][],
): HistoryEntry {
  const meta: HistoryEntry['meta'] = {};
  for (const id of Object.keys(outputs))
    meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
  return {
    prompt: [item.number, item.promptId, item.prompt, { ...item.extraData, client_id: item.clientId }, item.outputs],
    outputs,
    status: { status_str: status, completed: status === 'success', messages },
    meta,
  };
}

/** Largest history entry kept as is (JSON bytes); bigger ones lose extra_data, then non-image outputs. */
export const MAX_HISTORY_ENTRY_BYTES = 8 * 1024 * 1024;

/** The entry as JSON, shrunk when over MAX_HISTORY_ENTRY_BYTES so one prompt cannot bloat every /history answer. */
export function boundedEntryJson(entry: HistoryEntry, max = MAX_HISTORY_ENTRY_BYTES): string {
  let json = JSON.stringify(entry);
  if (json.length <= max) return json;
  const [n, id, prompt, extra, outputs] = entry.prompt;
  const note = `dropped: the history entry exceeded ${max} bytes`;
  const slim: HistoryEntry = {
    ...entry,
    prompt: [n, id, prompt, { client_id: extra.client_id ?? null, extra_data: note }, outputs],
  };
  json = JSON.stringify(slim);
  if (json.length <= max) return json;
  const outs: HistoryEntry['outputs'] = {};
  for (const [node, ui] of Object.entries(entry.outputs)) outs[node] = ui.images ? { images: ui.images } : {};
  json = JSON.stringify({ ...slim, outputs: outs, prompt: [n, id, {}, slim.prompt[3], outputs] });
  return json;
}

export interface LoggedEvent {
  seq: number;
  clientId: string | null;
  type: string;
  data: unknown;
}

export class QueueStore {
  readonly db: Database.Database;
  constructor(
    dataDir: string,
    private readonly eventsKept = 20000,
    /** finished prompts kept, oldest dropped first: ComfyUI keeps 10000 too (the job list and the file stay bounded) */
    private readonly historyKept = 10000,
  ) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'tcd-studio.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS queue (prompt_id TEXT PRIMARY KEY, number REAL NOT NULL, prompt TEXT NOT NULL,
        extra_data TEXT NOT NULL, outputs TEXT NOT NULL, client_id TEXT, state TEXT NOT NULL DEFAULT 'pending', created INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS history (prompt_id TEXT PRIMARY KEY, number REAL NOT NULL, entry TEXT NOT NULL, completed INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT, prompt_id TEXT, type TEXT NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS events_client ON events(client_id, seq);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    // the node a running prompt is executing, so a crash report can name it; databases from before it lack the column
    const columns = this.db.prepare(`PRAGMA table_info(queue)`).all() as { name: string }[];
    if (!columns.some((c) => c.name === 'running_node')) this.db.exec(`ALTER TABLE queue ADD COLUMN running_node TEXT`);
  }

  nextNumber(front = false): number {
    const row = this.db.prepare(`SELECT value FROM meta WHERE key = 'counter'`).get() as { value: string } | undefined;
    const n = row ? Number(row.value) + 1 : 0;
    // the enqueue that follows commits with fsync, which makes this earlier WAL frame durable too
    this.relaxed(() =>
      this.db
        .prepare(
          `INSERT INTO meta(key, value) VALUES ('counter', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
        )
        .run(String(n)),
    );
    if (!front) return n;
    const min = this.db.prepare(`SELECT MIN(number) AS m FROM queue WHERE state = 'pending'`).get() as {
      m: number | null;
    };
    return Math.min(min.m ?? 0, 0) - 1;
  }

  enqueue(item: QueueItem): void {
    this.db
      .prepare(
        `INSERT INTO queue(prompt_id, number, prompt, extra_data, outputs, client_id, state, created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`,
      )
      .run(
        item.promptId,
        item.number,
        JSON.stringify(item.prompt),
        JSON.stringify(item.extraData),
        JSON.stringify(item.outputs),
        item.clientId,
        Date.now(),
      );
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
  private rowToItem(r: any): QueueItem {
    return {
      number: r.number,
      promptId: r.prompt_id,
      prompt: JSON.parse(r.prompt),
      extraData: JSON.parse(r.extra_data),
      outputs: JSON.parse(r.outputs),
      clientId: r.client_id,
    };
  }

  pending(): QueueItem[] {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    return (this.db.prepare(`SELECT * FROM queue WHERE state = 'pending' ORDER BY number, created`).all() as any[]).map(
      (r) => this.rowToItem(r),
    );
  }
  running(): QueueItem[] {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    return (this.db.prepare(`SELECT * FROM queue WHERE state = 'running' ORDER BY number`).all() as any[]).map((r) =>
      this.rowToItem(r),
    );
  }
  pendingCount(): number {
    return (this.db.prepare(`SELECT COUNT(*) AS c FROM queue`).get() as { c: number }).c;
  }
  has(promptId: string): boolean {
    return (
      !!this.db.prepare(`SELECT 1 FROM queue WHERE prompt_id = ?`).get(promptId) ||
      !!this.db.prepare(`SELECT 1 FROM history WHERE prompt_id = ?`).get(promptId)
    );
  }

  /** Atomically take the next pending prompt and mark it running. */
  take(): QueueItem | undefined {
    // a 'running' mark lost to a power cut only means the prompt runs again: no fsync needed
    return this.relaxed(() =>
      this.db.transaction(() => {
        const r = this.db.prepare(`SELECT * FROM queue WHERE state = 'pending' ORDER BY number, created LIMIT 1`).get();
        if (!r) return undefined;
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
        this.db.prepare(`UPDATE queue SET state = 'running' WHERE prompt_id = ?`).run((r as any).prompt_id);
        return this.rowToItem(r);
      })(),
    );
  }

  /** Marks a prompt running that another process took (a farm worker), as take() does for this one. */
  markRunning(promptId: string): void {
    this.db.prepare(`UPDATE queue SET state = 'running' WHERE prompt_id = ?`).run(promptId);
  }

  /**
   * Records the node a running prompt has started (one small UPDATE per node, not per progress step), so that after a
   * crash the report says where it died. Relaxed like the event log: it must survive kill -9, not a power cut.
   */
  setRunningNode(promptId: string, nodeId: string): void {
    this.relaxed(() =>
      this.db
        .prepare(`UPDATE queue SET running_node = ? WHERE prompt_id = ? AND state = 'running'`)
        .run(nodeId, promptId),
    );
  }
  /** The node last recorded by setRunningNode for a prompt still in the queue; null when none started. */
  runningNode(promptId: string): string | null {
    const r = this.db.prepare(`SELECT running_node FROM queue WHERE prompt_id = ?`).get(promptId) as
      { running_node: string | null } | undefined;
    return r?.running_node ?? null;
  }

  deletePending(ids: string[]): number {
    const st = this.db.prepare(`DELETE FROM queue WHERE prompt_id = ? AND state = 'pending'`);
    return this.db.transaction(() => ids.reduce((n, id) => n + st.run(id).changes, 0))();
  }
  clearPending(): number {
    return this.db.prepare(`DELETE FROM queue WHERE state = 'pending'`).run().changes;
  }

  /** Move a finished prompt from the queue to history in one transaction. */
  finish(item: QueueItem, entry: HistoryEntry): void {
    const json = boundedEntryJson(entry);
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM queue WHERE prompt_id = ?`).run(item.promptId);
      this.db
        .prepare(`INSERT OR REPLACE INTO history(prompt_id, number, entry, completed) VALUES (?, ?, ?, ?)`)
        .run(item.promptId, item.number, json, Date.now());
      // rowid is completion order: drop everything up to the newest row past the limit
      this.db
        .prepare(`DELETE FROM history WHERE rowid <= (SELECT rowid FROM history ORDER BY rowid DESC LIMIT 1 OFFSET ?)`)
        .run(this.historyKept);
    })();
  }

  /**
   * Oldest first, like ComfyUI: `maxItems` alone gives the most recent maxItems entries; a non-negative `offset`
   * starts there instead (offset < 0 means "not given").
   */
  history(maxItems?: number, offset = -1): Record<string, HistoryEntry> {
    const out: Record<string, HistoryEntry> = {};
    const next = this.historyPages(maxItems, offset);
    for (let page = next(); page; page = next()) for (const [id, entry] of page) out[id] = JSON.parse(entry);
    return out;
  }

  /**
   * history() as pages of [prompt_id, entry as JSON text], for streaming an answer that may not fit in one string;
   * call the result until it returns null.
   */
  historyPages(maxItems?: number, offset = -1, pageSize = 64): () => [string, string][] | null {
    const limit = maxItems === undefined || maxItems < 0 ? -1 : maxItems;
    if (offset < 0) {
      const count = (this.db.prepare(`SELECT COUNT(*) AS c FROM history`).get() as { c: number }).c;
      offset = limit < 0 ? 0 : Math.max(0, count - limit);
    }
    // rowid is insertion (= completion) order, also for prompts finished within one millisecond, which an order by
    // the ms timestamp then the number put out of order
    const st = this.db.prepare(`SELECT prompt_id, entry FROM history ORDER BY rowid LIMIT ? OFFSET ?`);
    let pos = offset,
      left = limit < 0 ? Infinity : limit;
    return () => {
      if (left <= 0) return null;
      const rows = st.all(Math.min(pageSize, left), pos) as { prompt_id: string; entry: string }[];
      if (!rows.length) return null;
      pos += rows.length;
      left -= rows.length;
      return rows.map((r) => [r.prompt_id, r.entry]);
    };
  }
  /**
   * Every history entry's prompt id and row id, without the entries: a reader that keeps summaries (GET /jobs) parses
   * only what it has not seen. A rewritten entry (INSERT OR REPLACE) gets a new row id.
   */
  historyKeys(): { id: string; rowid: number }[] {
    return (
      this.db.prepare(`SELECT prompt_id, rowid FROM history`).all() as { prompt_id: string; rowid: number }[]
    ).map((r) => ({ id: r.prompt_id, rowid: r.rowid }));
  }
  historyItem(promptId: string): HistoryEntry | undefined {
    const r = this.db.prepare(`SELECT entry FROM history WHERE prompt_id = ?`).get(promptId) as
      { entry: string } | undefined;
    return r ? JSON.parse(r.entry) : undefined;
  }
  deleteHistory(ids: string[]): void {
    const st = this.db.prepare(`DELETE FROM history WHERE prompt_id = ?`);
    this.db.transaction(() => ids.forEach((id) => st.run(id)))();
  }
  clearHistory(): void {
    this.db.prepare(`DELETE FROM history`).run();
  }

  /**
   * Runs `fn` with synchronous=NORMAL: in WAL mode its commit survives a process crash (kill -9) but skips the fsync
   * (~3 ms each), which matters on the per-event hot path. Accepting and finishing prompts stay fully synchronous.
   */
  private relaxed<T>(fn: () => T): T {
    this.db.pragma('synchronous = NORMAL');
    try {
      return fn();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  logEvent(clientId: string | null, promptId: string | null, type: string, data: unknown): number {
    return this.relaxed(() => this.logEventNow(clientId, promptId, type, data));
  }

  private logEventNow(clientId: string | null, promptId: string | null, type: string, data: unknown): number {
    const r = this.db
      .prepare(`INSERT INTO events(client_id, prompt_id, type, data, ts) VALUES (?, ?, ?, ?, ?)`)
      .run(clientId, promptId, type, JSON.stringify(data), Date.now());
    const seq = Number(r.lastInsertRowid);
    if (seq % 1000 === 0) this.db.prepare(`DELETE FROM events WHERE seq <= ?`).run(seq - this.eventsKept);
    return seq;
  }
  eventsSince(clientId: string, since: number): LoggedEvent[] {
    return (
      (
        this.db
          .prepare(`SELECT seq, client_id, type, data FROM events WHERE client_id = ? AND seq > ? ORDER BY seq`)
          // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
          .all(clientId, since) as any[]
      ).map((r) => ({ seq: r.seq, clientId: r.client_id, type: r.type, data: JSON.parse(r.data) }))
    );
  }
  lastSeq(): number {
    return (this.db.prepare(`SELECT COALESCE(MAX(seq), 0) AS s FROM events`).get() as { s: number }).s;
  }

  close(): void {
    this.db.close();
  }
}
