/**
 * ComfyUI's models/<folder> layout: checkpoints, loras, vae, embeddings, ... Lists files with the right extensions
 * (recursively, with forward-slash subfolders like ComfyUI) and resolves a name safely.
 */
import { readdirSync, statSync, existsSync, realpathSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { resolveInside, PathError } from './safe-path.js';

export const MODEL_EXTENSIONS = ['.safetensors', '.sft', '.ckpt', '.pt', '.pth', '.bin'];
export const MODEL_FOLDERS = ['checkpoints', 'loras', 'vae', 'text_encoders', 'clip', 'unet', 'diffusion_models', 'embeddings', 'upscale_models', 'controlnet', 'clip_vision'];

export class ModelFolders {
  constructor(readonly root: string) {}

  has(folder: string): boolean { return MODEL_FOLDERS.includes(folder); }

  list(folder: string): string[] {
    if (!this.has(folder)) return [];
    const dir = join(this.root, folder);
    if (!existsSync(dir)) return [];
    const out: string[] = [];
    const realDir = realpathSync(dir);
    // a symlink leaving the folder would be refused by resolve(): do not offer it
    const inside = (p: string) => { try { const r = realpathSync(p); return r === realDir || r.startsWith(realDir + sep); } catch { return false; } };
    const walk = (d: string, depth: number) => {
      if (depth > 8) return;
      for (const name of readdirSync(d)) {
        if (name.startsWith('.')) continue;
        const p = join(d, name);
        let st;
        try { st = statSync(p); } catch { continue; }
        if (!inside(p)) continue;
        if (st.isDirectory()) walk(p, depth + 1);
        else if (MODEL_EXTENSIONS.some((e) => name.toLowerCase().endsWith(e))) out.push(relative(dir, p).split(sep).join('/'));
      }
    };
    walk(dir, 0);
    return out.sort();
  }

  /** Absolute path of models/<folder>/<name>; refuses traversal and names that are not listed files. */
  resolve(folder: string, name: string): string {
    if (!this.has(folder)) throw new Error(`unknown model folder '${folder}'`);
    let p: string;
    try { p = resolveInside(join(this.root, folder), name); } catch (e) {
      if (e instanceof PathError) throw new PathError(`refused model name ${folder}/${JSON.stringify(name)}: ${e.message}`, e.status);
      throw e;
    }
    if (!existsSync(p)) throw new Error(`model file not found: ${folder}/${name} (looked in ${join(this.root, folder)})`);
    return p;
  }
}
