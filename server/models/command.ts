/**
 * `tcd-studio models list [--models DIR] [--catalog FILE]` and
 * `tcd-studio models pull NAME... [--models DIR] [--catalog FILE] [--skip-sha]`.
 * A progress bar on a terminal (a line per 10% otherwise); exit 1 with a one-line reason when a download fails.
 * Example: tcd-studio models pull sdxl-base tcd-sdxl-lora
 */
import type { Settings } from '../settings.js';
import { findEntry, loadCatalog } from './catalog.js';
import { pullModel } from './pull.js';
import { formatBytes, listText } from './list.js';

function progressPrinter(label: string) {
  const tty = process.stderr.isTTY === true;
  let lastTenth = -1, lastDraw = 0;
  return {
    update(done: number, total: number | null) {
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && done !== total) return;
        lastDraw = now;
        const f = total ? done / total : 0, w = 30, k = Math.round(f * w);
        process.stderr.write(`\r${label} [${'#'.repeat(k)}${'.'.repeat(w - k)}] ${formatBytes(done)}${total ? ` / ${formatBytes(total)} ${(100 * f).toFixed(1)}%` : ''}   `);
      } else if (total) {
        const tenth = Math.floor((10 * done) / total);
        if (tenth > lastTenth) { lastTenth = tenth; process.stderr.write(`${label}: ${tenth * 10}% (${formatBytes(done)} / ${formatBytes(total)})\n`); }
      }
    },
    end() { if (tty) process.stderr.write('\n'); },
  };
}

export async function modelsCommand(s: Pick<Settings, 'models' | 'catalog' | 'skipSha'>, positionals: string[]): Promise<number> {
  const values = { catalog: s.catalog, 'skip-sha': s.skipSha };
  const [sub, ...names] = positionals;
  const modelsDir = s.models;
  let catalog;
  try { catalog = loadCatalog(values.catalog); } catch (e) { console.error(`tcd-studio models: ${(e as Error).message}`); return 1; }
  if (sub === 'list') { console.log(listText(modelsDir, catalog)); return 0; }
  if (sub !== 'pull' || names.length === 0) {
    console.error('usage: tcd-studio models list | pull NAME... [--models DIR] [--catalog FILE.json] [--skip-sha]');
    return 2;
  }
  for (const name of names) {
    const entry = findEntry(name, catalog);
    if (!entry) { console.error(`tcd-studio models: no catalog entry "${name}" (known: ${catalog.map((e) => e.name).join(', ')})`); return 1; }
    const bar = progressPrinter(entry.filename);
    try {
      const r = await pullModel(entry, modelsDir, { onProgress: bar.update, skipSha: values['skip-sha'], log: (m) => process.stderr.write(`${m}\n`) });
      bar.end();
      if (r.alreadyInstalled) { console.log(`${entry.name}: already installed at ${r.path}`); continue; }
      const check = entry.sha256 && !values['skip-sha'] ? 'sha256 verified' : `sha256 ${r.sha256} (not in the catalog: not verified)`;
      console.log(`${entry.name}: ${r.path} (${formatBytes(r.bytes)}${r.resumedFrom ? `, resumed at ${formatBytes(r.resumedFrom)}` : ''}; ${check})`);
    } catch (e) {
      bar.end();
      console.error(`tcd-studio models: ${(e as Error).message}`);
      return 1;
    }
  }
  return 0;
}
