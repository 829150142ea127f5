/**
 * ComfyUI's TAESD rules for VAELoader: `taesd` is listed when models/vae_approx holds both a `taesd_encoder.*` and a
 * `taesd_decoder.*` file (`taesdxl` likewise with `taesdxl_`), and loads with the latent scale of the family it
 * stands in for (taesd 0.18215, taesdxl 0.13025, shift 0). Only .safetensors files are read: when a name has both a
 * .pth and a .safetensors file, the .safetensors one is used.
 * Example: taesdFiles(models, 'taesdxl') -> { encoder: '/m/vae_approx/taesdxl_encoder.safetensors', ..., scale: 0.13025 }
 */
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { safetensorsWeights } from '../server/engine/onnx/weights.js';
import { TAESD_SCALING, taesdFileProblem } from '../server/engine/model/taesd.js';
import type { TaesdRef } from '../server/engine/engine.js';
import type { ModelFolders } from '../server/storage/model-folders.js';

const NAMES = ['taesd', 'taesdxl'] as const;
type TaesdName = (typeof NAMES)[number];

/** The file of models/vae_approx whose name starts with `prefix` (a .safetensors one first), or undefined. */
function pick(models: ModelFolders, prefix: string): string | undefined {
  const files = models.list('vae_approx').filter((f) => f.startsWith(prefix));
  return files.find((f) => /\.(safetensors|sft)$/i.test(f)) ?? files[0];
}

/** The TAESD names VAELoader lists, in ComfyUI's order. */
export function taesdNames(models: ModelFolders): string[] {
  return NAMES.filter((n) => pick(models, `${n}_encoder.`) && pick(models, `${n}_decoder.`));
}

/** The files and scaling of a TAESD name; undefined when `name` is not one of them (a models/vae file). */
export function taesdFiles(models: ModelFolders, name: string): TaesdRef | undefined {
  if (!(NAMES as readonly string[]).includes(name)) return undefined;
  const enc = pick(models, `${name}_encoder.`),
    dec = pick(models, `${name}_decoder.`);
  if (!enc || !dec) return undefined;
  return {
    encoder: models.resolve('vae_approx', enc),
    decoder: models.resolve('vae_approx', dec),
    ...TAESD_SCALING[name as TaesdName],
  };
}

/** Why a TAESD pair cannot be loaded (pickled files, wrong layout, unreadable); undefined when both can. */
export function taesdProblem(t: TaesdRef): string | undefined {
  for (const [part, path] of [
    ['encoder', t.encoder],
    ['decoder', t.decoder],
  ] as const) {
    const base = path.split(/[\\/]/).pop();
    if (!/\.(safetensors|sft)$/i.test(path)) return `${base}: only .safetensors TAESD files are read`;
    let file: SafetensorsFile | undefined;
    try {
      file = SafetensorsFile.open(path);
      const problem = taesdFileProblem(safetensorsWeights(file), part);
      if (problem) return `${base}: ${problem}`;
    } catch (e) {
      return `${base}: ${(e as Error).message}`;
    } finally {
      file?.close();
    }
  }
  return undefined;
}
