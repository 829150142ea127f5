/**
 * ComfyUI's models/<folder> layout: checkpoints, loras, vae, embeddings, ... Lists files with the right extensions
 * (recursively, with forward-slash subfolders like ComfyUI) and resolves a name safely.
 *
 * Like ComfyUI, symbolic links inside the model folders are followed (people keep models on other drives and link
 * them in), and extra folders per kind come from extra_model_paths.yaml. A name is still refused when it is absolute
 * or climbs out with `..`: what a link points at is the machine owner's choice, what a request names is not.
 * (Upload, output and userdata folders keep refusing links.)
 */
import { readdirSync, statSync, existsSync, realpathSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { checkRelativeName, PathError } from './safe-path.js';

export const MODEL_EXTENSIONS = ['.safetensors', '.sft', '.ckpt', '.pt', '.pth', '.bin'];
export const MODEL_FOLDERS = [
  'checkpoints',
  'loras',
  'vae',
  'text_encoders',
  'clip',
  'unet',
  'diffusion_models',
  'embeddings',
  'upscale_models',
  'vae_approx',
  'controlnet',
  'clip_vision',
  'hypernetworks',
];

/** One listed model file: its name, which of the folder's roots holds it, size and mtime (ms). */
export interface ModelFile {
  name: string;
  pathIndex: number;
  size: number;
  modified: number;
}

export class ModelFolders {
  /** @param extra more folders per kind (extra_model_paths.yaml), searched after models/<folder> */
  constructor(
    readonly root: string,
    private readonly extra: Record<string, string[]> = {},
  ) {}

  has(folder: string): boolean {
    return MODEL_FOLDERS.includes(folder);
  }

  /** The folders searched for one kind, in order: models/<folder>, then the extra ones. */
  roots(folder: string): string[] {
    if (!this.has(folder)) return [];
    return [join(this.root, folder), ...(this.extra[folder] ?? []).map((p) => resolve(p))];
  }

  /** Files of one kind with where they were found; a name found in two roots is listed once (the first wins). */
  files(folder: string): ModelFile[] {
    const seen = new Map<string, ModelFile>();
    this.roots(folder).forEach((dir, pathIndex) => {
      if (!existsSync(dir)) return;
      const visited = new Set<string>(); // real folders already walked: a link loop ends here
      const walk = (d: string, depth: number) => {
        let real: string;
        try {
          real = realpathSync(d);
        } catch {
          return;
        }
        if (depth > 8 || visited.has(real)) return;
        visited.add(real);
        let names: string[];
        try {
          names = readdirSync(d);
        } catch {
          return;
        }
        for (const name of names) {
          if (name.startsWith('.')) continue;
          const p = join(d, name);
          let st;
          try {
            st = statSync(p);
          } catch {
            continue;
          } // a dangling link
          if (st.isDirectory()) walk(p, depth + 1);
          else if (st.isFile() && MODEL_EXTENSIONS.some((e) => name.toLowerCase().endsWith(e))) {
            const rel = relative(dir, p).split(sep).join('/');
            if (!seen.has(rel)) seen.set(rel, { name: rel, pathIndex, size: st.size, modified: st.mtimeMs });
          }
        }
      };
      walk(dir, 0);
    });
    return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  list(folder: string): string[] {
    return this.files(folder).map((f) => f.name);
  }

  /** Absolute path of <folder>/<name> in the first root holding it; refuses traversal and absolute names. */
  resolve(folder: string, name: string): string {
    if (!this.has(folder)) throw new Error(`unknown model folder '${folder}'`);
    try {
      checkRelativeName(name);
      if (!name) throw new PathError('empty name', 400);
    } catch (e) {
      if (e instanceof PathError)
        throw new PathError(`refused model name ${folder}/${JSON.stringify(name)}: ${e.message}`, e.status);
      throw e;
    }
    for (const dir of this.roots(folder)) {
      const p = resolve(dir, name);
      // lexically inside its root (links inside are followed on purpose, see above)
      if (!p.startsWith(resolve(dir) + sep))
        throw new PathError(`refused model name ${folder}/${JSON.stringify(name)}: path escapes its folder`, 403);
      if (existsSync(p) && statSync(p).isFile()) return p;
    }
    throw new Error(`model file not found: ${folder}/${name} (looked in ${this.roots(folder).join(', ')})`);
  }
}
