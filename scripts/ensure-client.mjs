// `npm start`'s prestart: builds the browser editor when dist/client/index.html is missing or older than any
// file under client/. Keeps `npm start` a one-step affair on a fresh clone.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const OUT = 'dist/client/index.html';

function newest(dir) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    t = Math.max(t, s.isDirectory() ? newest(p) : s.mtimeMs);
  }
  return t;
}

const built = existsSync(OUT) ? statSync(OUT).mtimeMs : 0;
const sources = newest('client');
if (built >= sources) {
  console.log('client build is up to date');
} else {
  console.log(built ? 'client sources changed: rebuilding the editor' : 'building the editor (first run)');
  const r = spawnSync('npx', ['vite', 'build', '--config', 'client/vite.config.ts'], {
    stdio: 'inherit',
    shell: process.platform === 'win32',
  });
  process.exit(r.status ?? 1);
}
