/**
 * Models `tcd-studio models pull NAME` knows: where each comes from (its public Hugging Face URL), where it goes
 * (models/<folder>/<filename>, ComfyUI's usual names, which the ready workflows use) and, where known, its size and
 * sha256. `size`/`sha256` null = not known to this catalog: the download is then checked against the server's
 * Content-Length only, and the computed sha256 is printed so it can be added here.
 * Example: findEntry('tcd-sdxl-lora')?.filename === 'TCD-SDXL-LoRA.safetensors'
 */
import { readFileSync } from 'node:fs';
import { MODEL_FOLDERS } from '../storage/model-folders.js';

export interface CatalogEntry {
  name: string;
  folder: string;
  filename: string;
  url: string;
  /** bytes, or null when not known */
  size: number | null;
  /** lowercase hex, or null when not known */
  sha256: string | null;
  description: string;
}

export const CATALOG: readonly CatalogEntry[] = [
  {
    name: 'sdxl-base', folder: 'checkpoints', filename: 'sd_xl_base_1.0.safetensors',
    url: 'https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors',
    // the published LFS size and sha256 of the file in that repository
    size: 6938078334, sha256: '31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b',
    description: 'Stable Diffusion XL base 1.0 (fp16 weights in one file, 6.9 GB)',
  },
  {
    name: 'sd15', folder: 'checkpoints', filename: 'v1-5-pruned-emaonly.safetensors',
    url: 'https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors',
    size: 4265146304, sha256: '6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa',
    description: 'Stable Diffusion 1.5, EMA-only pruned (4.3 GB)',
  },
  {
    name: 'tcd-sdxl-lora', folder: 'loras', filename: 'TCD-SDXL-LoRA.safetensors',
    url: 'https://huggingface.co/h1t/TCD-SDXL-LoRA/resolve/main/pytorch_lora_weights.safetensors',
    size: null, sha256: null,
    description: 'TCD LoRA for SDXL (h1t/TCD-SDXL-LoRA; size and sha256 not recorded in this catalog)',
  },
  {
    name: 'tcd-sd15-lora', folder: 'loras', filename: 'TCD-SD15-LoRA.safetensors',
    url: 'https://huggingface.co/h1t/TCD-SD15-LoRA/resolve/main/pytorch_lora_weights.safetensors',
    size: null, sha256: null,
    description: 'TCD LoRA for SD1.5 (h1t/TCD-SD15-LoRA; size and sha256 not recorded in this catalog)',
  },
];

/** Checks one entry's fields (used for entries read from a --catalog file). */
export function checkEntry(e: unknown, where: string): CatalogEntry {
  const x = e as Partial<CatalogEntry>;
  const bad = (f: string) => new Error(`${where}: entry ${JSON.stringify(x?.name ?? '?')} has no valid ${f}`);
  if (!x || typeof x !== 'object') throw new Error(`${where}: an entry is not an object`);
  if (typeof x.name !== 'string' || !/^[\w.-]+$/.test(x.name)) throw bad('name');
  if (typeof x.folder !== 'string' || !MODEL_FOLDERS.includes(x.folder)) throw bad(`folder (one of ${MODEL_FOLDERS.join(', ')})`);
  if (typeof x.filename !== 'string' || !/^[\w.() -]+$/.test(x.filename) || x.filename.startsWith('.')) throw bad('filename');
  if (typeof x.url !== 'string' || !/^https?:\/\//.test(x.url)) throw bad('url');
  if (x.size != null && (!Number.isSafeInteger(x.size) || x.size < 0)) throw bad('size');
  if (x.sha256 != null && !/^[0-9a-f]{64}$/i.test(x.sha256)) throw bad('sha256');
  return { name: x.name, folder: x.folder, filename: x.filename, url: x.url, size: x.size ?? null, sha256: x.sha256?.toLowerCase() ?? null, description: x.description ?? '' };
}

/** The built-in catalog plus the entries of a JSON file (an array of entries; same names replace built-in ones). */
export function loadCatalog(extraFile?: string): CatalogEntry[] {
  const out = new Map(CATALOG.map((e) => [e.name, e]));
  if (extraFile) {
    let doc: unknown;
    try { doc = JSON.parse(readFileSync(extraFile, 'utf8')); } catch (e) { throw new Error(`${extraFile}: ${(e as Error).message}`); }
    if (!Array.isArray(doc)) throw new Error(`${extraFile}: expected a JSON array of catalog entries`);
    for (const e of doc) { const c = checkEntry(e, extraFile); out.set(c.name, c); }
  }
  return [...out.values()];
}

export function findEntry(name: string, catalog: readonly CatalogEntry[] = CATALOG): CatalogEntry | undefined {
  return catalog.find((e) => e.name === name || e.filename === name);
}
