/**
 * Per-user UI settings (ComfyUI's /api/settings: `{id: value}`) in the server's SQLite file, so a browser that
 * comes back finds its settings (and ComfyUI's frontend its "tutorial completed" flag). One row per user and id,
 * the value kept as JSON text. Its own connection: the queue store's connection stays the queue's business.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export class SettingsStore {
  private readonly db: Database.Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'tcd-studio.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS settings (user TEXT NOT NULL, id TEXT NOT NULL, value TEXT NOT NULL,
      PRIMARY KEY (user, id))`);
  }

  all(user: string): Record<string, unknown> {
    const rows = this.db.prepare(`SELECT id, value FROM settings WHERE user = ? ORDER BY id`).all(user) as {
      id: string;
      value: string;
    }[];
    const out: Record<string, unknown> = {};
    for (const r of rows) out[r.id] = JSON.parse(r.value);
    return out;
  }

  /** The stored value, or undefined when the id was never set. */
  get(user: string, id: string): unknown {
    const r = this.db.prepare(`SELECT value FROM settings WHERE user = ? AND id = ?`).get(user, id) as
      { value: string } | undefined;
    return r ? JSON.parse(r.value) : undefined;
  }

  /** Sets several ids in one transaction; a value of undefined removes the id. */
  set(user: string, values: Record<string, unknown>): void {
    const put = this.db.prepare(`INSERT INTO settings(user, id, value) VALUES (?, ?, ?)
      ON CONFLICT(user, id) DO UPDATE SET value = excluded.value`);
    const del = this.db.prepare(`DELETE FROM settings WHERE user = ? AND id = ?`);
    this.db.transaction(() => {
      for (const [id, v] of Object.entries(values)) {
        if (v === undefined) del.run(user, id);
        else put.run(user, id, JSON.stringify(v));
      }
    })();
  }

  close(): void {
    this.db.close();
  }
}
