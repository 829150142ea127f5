/**
 * What is installed under models/ (every ComfyUI folder, with sizes), and the catalog with each entry's state:
 * installed, partial (an unfinished .part, with how far it got) or missing.
 * Example: installedModels('models') -> [{ folder: 'checkpoints', name: 'sd_xl_base_1.0.safetensors', bytes: 6938078334 }]
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL_FOLDERS, ModelFolders } from '../storage/model-folders.js';
import type { CatalogEntry } from './catalog.js';

export interface InstalledModel { folder: string; name: string; bytes: number }
export type EntryState = { state: 'installed'; bytes: number } | { state: 'partial'; bytes: number } | { state: 'missing' };

export function installedModels(modelsDir: string): InstalledModel[] {
  const folders = new ModelFolders(modelsDir);
  return MODEL_FOLDERS.flatMap((folder) => folders.list(folder).map((name) => ({ folder, name, bytes: statSync(join(modelsDir, folder, name)).size })));
}

export function entryState(entry: CatalogEntry, modelsDir: string): EntryState {
  const p = join(modelsDir, entry.folder, entry.filename);
  if (existsSync(p)) return { state: 'installed', bytes: statSync(p).size };
  if (existsSync(`${p}.part`)) return { state: 'partial', bytes: statSync(`${p}.part`).size };
  return { state: 'missing' };
}

export function formatBytes(n: number | null): string {
  if (n === null) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0, v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** The text `tcd-studio models list` prints. */
export function listText(modelsDir: string, catalog: readonly CatalogEntry[]): string {
  const installed = installedModels(modelsDir);
  const lines = [`Installed in ${modelsDir}:`];
  if (installed.length === 0) lines.push('  (none)');
  const w = Math.max(0, ...installed.map((m) => m.folder.length + m.name.length + 1));
  for (const m of installed) lines.push(`  ${`${m.folder}/${m.name}`.padEnd(w)}  ${formatBytes(m.bytes)}`);
  lines.push('', 'Catalog (tcd-studio models pull NAME):');
  const nw = Math.max(...catalog.map((e) => e.name.length));
  const fw = Math.max(...catalog.map((e) => e.folder.length + e.filename.length + 1));
  for (const e of catalog) {
    const s = entryState(e, modelsDir);
    const state = s.state === 'installed' ? 'installed' : s.state === 'partial' ? `partial ${formatBytes(s.bytes)}${e.size ? ` (${Math.floor((100 * s.bytes) / e.size)}%)` : ''}` : 'not installed';
    lines.push(`  ${e.name.padEnd(nw)}  ${`${e.folder}/${e.filename}`.padEnd(fw)}  ${formatBytes(e.size).padStart(8)}  ${state.padEnd(13)}  ${e.description}`);
  }
  return lines.join('\n');
}
