/** Write a file so readers never see half of it: temp file in the same folder, fsync, rename. */
import {
  openSync,
  writeSync,
  fsyncSync,
  closeSync,
  renameSync,
  unlinkSync,
  readdirSync,
  existsSync,
  statSync,
} from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const TEMP_PREFIX = '.tcd-partial-';

export function writeFileAtomic(path: string, data: Uint8Array): void {
  // renaming onto a folder fails after the temp file exists, leaving it behind: refuse before writing anything
  if (existsSync(path) && statSync(path).isDirectory())
    throw Object.assign(new Error(`${basename(path)} is a folder`), { code: 'EISDIR' });
  const tmp = join(dirname(path), `${TEMP_PREFIX}${randomBytes(6).toString('hex')}-${basename(path)}`);
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
}

/** Remove temp files a crash left behind (called at start-up on output/, input/, temp/). */
export function removeStalePartials(dir: string): number {
  let n = 0;
  try {
    for (const name of readdirSync(dir))
      if (name.startsWith(TEMP_PREFIX)) {
        try {
          unlinkSync(join(dir, name));
          n++;
        } catch {
          /* race */
        }
      }
  } catch {
    /* folder missing */
  }
  return n;
}
