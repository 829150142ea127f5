/**
 * Path safety for every user-supplied file name (/view, /upload/image, model names): no absolute paths, no `..`
 * segments (also percent-encoded or with backslashes), no NUL, and the resolved real path (symlinks followed) must
 * stay inside the base folder.
 */
import { realpathSync, existsSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';

export class PathError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 403 | 404,
  ) {
    super(message);
    this.name = 'PathError';
  }
}

/** Refuse names that are syntactically unsafe (400). */
export function checkRelativeName(name: string, what = 'file name'): void {
  if (typeof name !== 'string') throw new PathError(`${what} must be a string`, 400);
  let decoded = name;
  try {
    decoded = decodeURIComponent(name);
  } catch {
    /* keep as is: literal % is allowed */
  }
  for (const n of [name, decoded]) {
    if (n.includes('\0')) throw new PathError(`${what} contains a NUL byte`, 400);
    if (isAbsolute(n) || n.startsWith('/') || n.startsWith('\\') || /^[a-zA-Z]:/.test(n))
      throw new PathError(`${what} must be relative: ${JSON.stringify(name)}`, 400);
    if (n.split(/[\\/]+/).some((seg) => seg === '..'))
      throw new PathError(`${what} must not contain '..': ${JSON.stringify(name)}`, 400);
  }
}

/**
 * A name for a new file in one folder (uploads): one path segment, not `.`/`..`, no control characters, at most 255
 * UTF-8 bytes, and not the prefix the server uses for its own temp files (those are deleted at start-up).
 * Checked before any byte is written.
 */
export function checkNewFileName(name: unknown, reservedPrefix: string): string {
  if (typeof name !== 'string' || name === '') throw new PathError('file name is empty', 400);
  if (name === '.' || name === '..') throw new PathError(`file name ${JSON.stringify(name)} names a folder`, 400);
  if (/[\/]/.test(name)) throw new PathError(`file name must not contain folders: ${JSON.stringify(name)}`, 400);
  if (/[\x00-\x1f\x7f]/.test(name))
    throw new PathError(`file name contains a control character: ${JSON.stringify(name)}`, 400);
  if (Buffer.byteLength(name, 'utf8') > 255) throw new PathError('file name is longer than 255 bytes', 400);
  if (name.startsWith(reservedPrefix))
    throw new PathError(`file names starting with ${reservedPrefix} are reserved`, 400);
  checkRelativeName(name);
  return name;
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
  if (realProbe !== realBase && !realProbe.startsWith(realBase + sep))
    throw new PathError('path escapes its folder (symlink)', 403);
  return target;
}

export { join };
