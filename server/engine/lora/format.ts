/**
 * Reads a LoRA safetensors file into low-rank modules, whatever naming it uses:
 * - kohya:     `<module>.lora_down.weight`, `<module>.lora_up.weight`, `<module>.alpha` (module = `lora_unet_*`, `lora_te*_*`)
 * - diffusers: `<module>.lora.down.weight`, `<module>.lora.up.weight` (also `.lora_linear_layer.down/up`)
 * - PEFT:      `<module>.lora_A.weight`, `<module>.lora_B.weight` (optional `base_model.model.` prefix)
 * Every key that is not part of a complete down/up pair is kept in `unparsed`, so callers can report it.
 * Example:
 *   const lora = readLoraFile('/models/loras/tcd.safetensors');
 *   lora.modules.get('lora_unet_input_blocks_4_1_proj_in')?.rank; // 4
 */
import { statSync } from 'node:fs';
import { SafetensorsFile } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';

export type LoraFormat = 'kohya' | 'diffusers' | 'peft';

/** One low-rank pair: delta = scale * up.flatten(1) @ down.flatten(1), scale = alpha / rank (1 without alpha). */
export interface LoraModule {
  /** module name as the file spells it, without the down/up/alpha suffix */
  name: string;
  format: LoraFormat;
  down: Tensor; // [rank, in] or [rank, in, kh, kw]
  up: Tensor; // [out, rank] or [out, rank, 1, 1]
  alpha: number | null;
  rank: number;
  /** the file keys this module consumed */
  keys: string[];
}

export interface LoraFile {
  path: string;
  modules: Map<string, LoraModule>;
  /** keys that form no complete LoRA pair (other adapter kinds, orphans, metadata tensors) */
  unparsed: string[];
}

/** suffix -> which part of a pair it is; longest suffixes first so `.lora.down.weight` wins over shorter ones */
const SUFFIXES: [string, 'down' | 'up' | 'alpha', LoraFormat | null][] = [
  ['.lora_linear_layer.down.weight', 'down', 'diffusers'],
  ['.lora_linear_layer.up.weight', 'up', 'diffusers'],
  ['.lora_down.weight', 'down', 'kohya'],
  ['.lora_up.weight', 'up', 'kohya'],
  ['.lora.down.weight', 'down', 'diffusers'],
  ['.lora.up.weight', 'up', 'diffusers'],
  ['.lora_A.weight', 'down', 'peft'],
  ['.lora_B.weight', 'up', 'peft'],
  ['.alpha', 'alpha', null],
];

interface Parts {
  down?: string;
  up?: string;
  alpha?: string;
  format?: LoraFormat;
}

/** Splits a file key into (module, part); null when the key is not a LoRA pair member. */
function splitLoraKey(
  key: string,
): { module: string; part: 'down' | 'up' | 'alpha'; format: LoraFormat | null } | null {
  for (const [suffix, part, format] of SUFFIXES) {
    if (key.endsWith(suffix)) {
      const module = key.slice(0, -suffix.length).replace(/^base_model\.model\./, '');
      return { module, part, format };
    }
  }
  return null;
}

/** Groups keys into modules without reading tensors (header only). */
export function groupLoraKeys(keys: readonly string[]): { groups: Map<string, Parts>; loose: string[] } {
  const groups = new Map<string, Parts>();
  const loose: string[] = [];
  for (const key of keys) {
    const s = splitLoraKey(key);
    if (!s) {
      loose.push(key);
      continue;
    }
    const g = groups.get(s.module) ?? {};
    g[s.part] = key;
    if (s.format) g.format = s.format;
    groups.set(s.module, g);
  }
  return { groups, loose };
}

/** Opens and parses a LoRA file, reading every pair as float32. */
function readLoraFile(path: string): LoraFile {
  const file = SafetensorsFile.open(path);
  try {
    const { groups, loose } = groupLoraKeys(file.keys());
    const modules = new Map<string, LoraModule>();
    const unparsed = [...loose];
    for (const [name, g] of groups) {
      if (!g.down || !g.up) {
        unparsed.push(...[g.down, g.up, g.alpha].filter((k): k is string => !!k));
        continue;
      }
      const down = file.readTensor(g.down),
        up = file.readTensor(g.up);
      const rank = down.shape[0];
      if (up.shape[1] !== rank)
        throw new Error(`LoRA ${path}: module ${name} has down rank ${rank} but up [${up.shape}]`);
      const alpha = g.alpha ? file.readFloat32(g.alpha)[0] : null;
      modules.set(name, {
        name,
        format: g.format ?? 'kohya',
        down,
        up,
        alpha,
        rank,
        keys: [g.down, g.up, ...(g.alpha ? [g.alpha] : [])],
      });
    }
    return { path, modules, unparsed };
  } finally {
    file.close();
  }
}

const parsed = new Map<string, { id: string; lora: LoraFile }>();
/** readLoraFile with a cache keyed by path, size and mtime (LoRA files are small; the worker keeps them). */
export function loadLora(path: string): LoraFile {
  const s = statSync(path);
  const id = `${s.size}:${s.mtimeMs}`;
  const hit = parsed.get(path);
  if (hit && hit.id === id) return hit.lora;
  const lora = readLoraFile(path);
  parsed.set(path, { id, lora });
  return lora;
}
