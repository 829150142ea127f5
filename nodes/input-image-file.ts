/**
 * The file a LoadImage-style `image` value names. Like ComfyUI, any existing file counts, not only the top-level
 * names the widget's list shows: a subfolder (`pasted/x.png`, where ComfyUI's frontend uploads a pasted image) or a
 * name annotated with its folder (`clipspace/x.png [input]`, written by the mask editor; `x.png [output]`).
 * Validation, the cache fingerprint and execution all resolve through inputImagePath, so they read the same file.
 * Example: inputImagePath('pasted/a.png', dirs) -> <input>/pasted/a.png; '../a.png' throws PathError.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { splitAnnotated } from '../server/storage/annotated-path.js';
import { resolveInside } from '../server/storage/safe-path.js';
import type { NodeServices } from './services.js';

/** Absolute path of an image value, in the input folder unless annotated; throws for names leaving their folder. */
export function inputImagePath(value: string, dirs: NodeServices['dirs']): string {
  const { name, type } = splitAnnotated(value);
  return resolveInside(dirs[type ?? 'input'], name);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The `image` input's own check (ComfyUI's VALIDATE_INPUTS of LoadImage): the file exists and stays in its folder. */
export function checkInputImage(value: string, services: NodeServices): string | undefined {
  let path: string;
  try {
    path = inputImagePath(value, services.dirs);
  } catch (e) {
    return `Invalid image file: ${value} (${(e as Error).message})`;
  }
  return isFile(path) ? undefined : `Invalid image file: ${value}`;
}

/** IS_CHANGED: the file's hash, so the node re-runs when another file is stored under the same name. */
export function inputImageFingerprint(value: string, services: NodeServices): string {
  const path = inputImagePath(value, services.dirs);
  return isFile(path) ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'missing';
}

/** The file's bytes; one deleted since validation is an error naming the value. */
export function readInputImage(value: string, services: NodeServices): Buffer {
  const path = inputImagePath(value, services.dirs);
  if (!isFile(path)) throw new Error(`input image not found: ${value}`);
  return readFileSync(path);
}
