/** Writing a large JSON object to an HTTP response piece by piece, honouring back-pressure. */
import type { Response } from 'express';

/**
 * Writes `{"k1": v1, "k2": v2, ...}` where each page yields [key, value-as-JSON-text] pairs. Pages are fetched one at a
 * time (a SQLite cursor must not stay open across the awaits), and no string ever holds more than one value.
 */
export async function writeJsonObject(res: Response, pages: () => Iterable<[string, string]> | null): Promise<void> {
  let first = true;
  res.write('{');
  for (let page = pages(); page; page = pages()) {
    for (const [k, v] of page) {
      const ok = res.write(`${first ? '' : ', '}${JSON.stringify(k)}: ${v}`);
      first = false;
      if (!ok)
        await new Promise<void>((r) => {
          res.once('drain', r);
          res.once('close', r);
        });
      if (res.destroyed) return;
    }
  }
  res.end('}');
}
