/**
 * Path safety for every user-supplied file name (/view, /upload/image, model names): no absolute paths, no `..`
 * segments (also percent-encoded or with backslashes), no NUL, and the resolved real path (symlinks followed) must
 * stay inside the base folder.
 */
import { realpathSync, existsSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';

export class PathError extends Error {
  constructor(message: string, readonly status: 400 | 403 | 404) { super(message); this.name = 'PathError'; }
}

/** Refuse names that are syntactically unsafe (400). */
export function checkRelativeName(name: string, what = 'file name'): void {
  if (typeof name !== 'string') throw new PathError(`${what} must be a string`, 400);
  let decoded = name;
  try { decoded = decodeURIComponent(name); } catch { /* keep as is: literal % is allowed */ }
  for (const n of [name, decoded]) {
    if (n.includes('\0')) throw new PathError(`${what} contains a NUL byte`, 400);
    if (isAbsolute(n) || n.startsWith('/') || n.startsWith('\\') || /^[a-zA-Z]:/.test(n)) throw new PathError(`${what} must be relative: ${JSON.stringify(name)}`, 400);
    if (n.split(/[\\/]+/).some((seg) => seg === '..')) throw new PathError(`${what} must not contain '..': ${JSON.stringify(name)}`, 400);
  }
}

/**
 * Resolve `parts` under `base`; throws PathError 400 for unsafe names and 403 when the real path (after following
 * symlinks) leaves `base`. The file need not exist.
 */
export function resolveInside(base: string, ...parts: string[]): string {
  for (const p of parts) if (p) checkRelativeName(p);
  const baseAbs = resolve(base);
  const target = resolve(baseAbs, ...parts.filter(Boolean));
  if (target !== baseAbs && !target.startsWith(baseAbs + sep)) throw new PathError('path escapes its folder', 403);
  // follow symlinks of the deepest existing ancestor
  const realBase = existsSync(baseAbs) ? realpathSync(baseAbs) : baseAbs;
  let probe = target;
  while (!existsSync(probe) && probe !== baseAbs) probe = resolve(probe, '..');
  const realProbe = existsSync(probe) ? realpathSync(probe) : probe;
  if (realProbe !== realBase && !realProbe.startsWith(realBase + sep)) throw new PathError('path escapes its folder (symlink)', 403);
  return target;
}

export { join };
