/**
 * ComfyUI's per-user data folder (/api/userdata): saved workflows, user.css, templates, ... under
 * <data>/user/<user>/. Every name goes through the upload path rules (relative, no `..`, no NUL) and, beyond
 * them, no component of the path may be a symbolic link: a link would let a write land outside the folder.
 * Example: const u = new UserData(join(data, 'user')); u.write('default', 'workflows/a.json', bytes, false);
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { PathError, resolveInside } from './safe-path.js';
import { writeFileAtomic, TEMP_PREFIX } from './atomic-write.js';

/** ComfyUI's file info: size in bytes, modified in seconds since the epoch (a float, as os.path.getmtime). */
export interface UserFileInfo {
  path: string;
  size: number;
  modified: number;
}

export class UserDataExists extends Error {
  constructor(path: string) {
    super(`${path} already exists`);
    this.name = 'UserDataExists';
  }
}

export class UserData {
  constructor(readonly root: string) {}

  private userDir(user: string): string {
    if (!/^[\w.-]{1,64}$/.test(user) || user.startsWith('.'))
      throw new PathError(`invalid user ${JSON.stringify(user)}`, 400);
    const d = join(this.root, user);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /**
   * Absolute path of `rel` inside the user's folder; PathError when unsafe, escaping, or when any existing component
   * below the folder is a symbolic link. `rel` may be '' only with `allowRoot`.
   */
  resolve(user: string, rel: string, allowRoot = false): string {
    const base = this.userDir(user);
    if (typeof rel !== 'string' || (!rel && !allowRoot)) throw new PathError('a file path is required', 400);
    const p = resolveInside(base, rel);
    for (let probe = p; probe !== base && probe.startsWith(base + sep); probe = dirname(probe)) {
      let st;
      try {
        st = lstatSync(probe);
      } catch {
        continue;
      }
      if (st.isSymbolicLink()) throw new PathError(`${relative(base, probe)} is a symbolic link: refused`, 403);
    }
    return p;
  }

  info(user: string, path: string): UserFileInfo {
    const st = statSync(path);
    return {
      path: relative(this.userDir(user), path).split(sep).join('/'),
      size: st.size,
      modified: st.mtimeMs / 1000,
    };
  }

  /** Files under `dir` (paths relative to `dir`, forward slashes, sorted); null when `dir` is not a folder. */
  list(user: string, dir: string, recurse: boolean): { rel: string; abs: string }[] | null {
    const root = this.resolve(user, dir, true);
    if (!existsSync(root) || !lstatSync(root).isDirectory()) return null;
    const out: { rel: string; abs: string }[] = [];
    const walk = (d: string, depth: number) => {
      for (const name of readdirSync(d)) {
        if (name.startsWith(TEMP_PREFIX)) continue;
        const p = join(d, name);
        const st = lstatSync(p);
        if (st.isSymbolicLink()) continue;
        if (st.isDirectory()) {
          if (recurse && depth < 32) walk(p, depth + 1);
        } else if (st.isFile()) {
          out.push({ rel: relative(root, p).split(sep).join('/'), abs: p });
        }
      }
    };
    walk(root, 0);
    return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  }

  /** The file's bytes, or null when there is no such file. */
  read(user: string, rel: string): Buffer | null {
    const p = this.resolve(user, rel);
    return existsSync(p) && lstatSync(p).isFile() ? readFileSync(p) : null;
  }

  /** Writes atomically, creating folders; throws UserDataExists when the file exists and overwrite is false. */
  write(user: string, rel: string, bytes: Uint8Array, overwrite: boolean): UserFileInfo {
    const p = this.resolve(user, rel);
    if (existsSync(p)) {
      if (!lstatSync(p).isFile()) throw new PathError(`${rel} is a folder`, 400);
      if (!overwrite) throw new UserDataExists(rel);
    }
    mkdirSync(dirname(p), { recursive: true });
    this.resolve(user, rel); // the folders just made are ours, but re-check: a link raced in is still refused
    writeFileAtomic(p, bytes);
    return this.info(user, p);
  }

  /** Deletes a file; false when there was none. */
  delete(user: string, rel: string): boolean {
    const p = this.resolve(user, rel);
    if (!existsSync(p) || !lstatSync(p).isFile()) return false;
    rmSync(p);
    return true;
  }

  /** Renames `src` to `dest` (folders created); null when `src` does not exist; UserDataExists as write. */
  move(user: string, src: string, dest: string, overwrite: boolean): UserFileInfo | null {
    const from = this.resolve(user, src);
    const to = this.resolve(user, dest);
    if (!existsSync(from) || !lstatSync(from).isFile()) return null;
    if (existsSync(to)) {
      if (!lstatSync(to).isFile()) throw new PathError(`${dest} is a folder`, 400);
      if (!overwrite) throw new UserDataExists(dest);
    }
    mkdirSync(dirname(to), { recursive: true });
    renameSync(from, to);
    return this.info(user, to);
  }
}
