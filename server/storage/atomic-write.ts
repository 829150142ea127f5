/** Write a file so readers never see half of it: temp file in the same folder, fsync, rename. */
import { openSync, writeSync, fsyncSync, closeSync, renameSync, unlinkSync, readdirSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const TEMP_PREFIX = '.tcd-partial-';

export function writeFileAtomic(path: string, data: Uint8Array): void {
  const tmp = join(dirname(path), `${TEMP_PREFIX}${randomBytes(6).toString('hex')}-${basename(path)}`);
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Remove temp files a crash left behind (called at start-up on output/, input/, temp/). */
export function removeStalePartials(dir: string): number {
  let n = 0;
  try {
    for (const name of readdirSync(dir)) if (name.startsWith(TEMP_PREFIX)) { try { unlinkSync(join(dir, name)); n++; } catch { /* race */ } }
  } catch { /* folder missing */ }
  return n;
}
