// Browser-test harness: starts the real server (server/cli.ts) on a free port with temp dirs, and Debian's chromium
// through playwright-core. Tests skip visibly when chromium or the server entry point is absent.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = 'test-output/screenshots';
/** The server's demo checkpoint, kept between test files (test-output/ is gitignored; the server re-checks it). */
const DEMO_NAME = 'tcd-studio-demo-sdxl.safetensors';
const DEMO_CACHE = `test-output/client-test-models/${DEMO_NAME}`;
/**
 * How long a wait on the page may take before it counts as a failure. Generous: CI runs on 2 shared cores, where a
 * page that needs 1 s alone can need 20 s while something else builds. Waits end as soon as their state is reached.
 */
export const WAIT = 90_000;
/** The same for a whole image generation on the CPU. */
export const RUN_WAIT = 180_000;
/** The server entry point; TCD_DEV_CLI may point elsewhere while developing. */
const SERVER_ENTRY = process.env.TCD_DEV_CLI ?? 'server/cli.ts';

/** Why browser tests cannot run here, or false. Passed to node:test's `skip`. */
export function browserSkip(): string | false {
  if (!existsSync(CHROMIUM)) return `chromium not found at ${CHROMIUM} (apt-get install -y chromium)`;
  if (!existsSync(SERVER_ENTRY)) return 'server/cli.ts not present yet';
  return false;
}

/**
 * One editor (server + browser) for all tests of a file: started before them (unless browserSkip() says why not,
 * printed), closed after them. Returns the skip reason for the tests' `skip` option.
 * @example let h: Harness; const skip = editorForFile((started) => (h = started));
 */
export function editorForFile(use: (h: Harness) => void): string | false {
  const skip = browserSkip();
  if (skip) console.log(`# browser tests skipped: ${skip}`);
  let h: Harness | undefined;
  before(async () => {
    if (!skip) use((h = await startHarness()));
  });
  after(async () => {
    await h?.close();
  });
  return skip;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Harness {
  url: string;
  dirs: { root: string; data: string; models: string; output: string };
  server: ChildProcess;
  browser: Browser;
  page: Page;
  log: string[];
  /** Stops the server (SIGKILL: a crash) and, unless `down` is set, starts it again on the same port and folders. */
  restartServer(opts?: { signal?: NodeJS.Signals; down?: boolean }): Promise<void>;
  /** fetch() of `${url}api${path}`, with the server's token when it has one. */
  api(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

/** Builds dist/client if needed (same check as `npm start`). */
export function ensureClient(): void {
  const r = spawnSync(process.execPath, ['scripts/ensure-client.mjs'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('client build failed');
}

/**
 * Starts server + browser and opens the editor.
 * @example const h = await startHarness(); await h.page.click('[data-testid=queue-button]'); await h.close();
 */
export async function startHarness(
  opts: { env?: Record<string, string>; waitForEditor?: boolean; token?: string } = {},
): Promise<Harness> {
  ensureClient();
  const root = mkdtempSync(join(tmpdir(), 'tcd-client-test-'));
  const dirs = { root, data: join(root, 'data'), models: join(root, 'models'), output: join(root, 'output') };
  for (const d of [dirs.data, dirs.models, dirs.output]) mkdirSync(d, { recursive: true });
  // The server writes the demo checkpoint on first start (~7 s); later test files reuse a cached copy.
  const demo = join(dirs.models, 'checkpoints', DEMO_NAME);
  if (existsSync(DEMO_CACHE)) {
    mkdirSync(join(dirs.models, 'checkpoints'), { recursive: true });
    copyFileSync(DEMO_CACHE, demo);
  }
  const port = await freePort();
  const log: string[] = [];
  const url = `http://127.0.0.1:${port}/`;
  const token = opts.token ?? opts.env?.TCD_TOKEN;
  const auth: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        SERVER_ENTRY,
        'serve',
        '--port',
        String(port),
        '--listen',
        '127.0.0.1',
        '--data',
        dirs.data,
        '--models',
        dirs.models,
        '--output',
        dirs.output,
        ...(opts.token ? ['--token', opts.token] : []),
      ],
      {
        env: { ...process.env, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout!.on('data', (b) => log.push(String(b)));
    child.stderr!.on('data', (b) => log.push(String(b)));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}:\n${log.join('')}`);
      try {
        const r = await fetch(`${url}api/system_stats`, { headers: auth });
        if (r.status < 500) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`server did not start:\n${log.join('')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return child;
  };
  let server = await launch();
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (server.exitCode !== null || server.signalCode !== null) return;
    const exited = new Promise((r) => server.once('exit', r));
    server.kill(signal);
    await exited;
  };
  if (!existsSync(DEMO_CACHE) && existsSync(demo)) {
    mkdirSync(dirname(DEMO_CACHE), { recursive: true });
    const tmp = `${DEMO_CACHE}.${process.pid}.tmp`;
    copyFileSync(demo, tmp);
    renameSync(tmp, DEMO_CACHE); // atomic: a concurrent reader sees all of it or nothing
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1500, height: 850 } });
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}\n`));
  await page.goto(url);
  if (opts.waitForEditor !== false) await waitForEditor(page);
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    url,
    dirs,
    get server() {
      return server;
    },
    browser,
    page,
    log,
    async restartServer(o = {}) {
      await stop(o.signal ?? 'SIGTERM');
      if (!o.down) server = await launch();
    },
    api: (path, init = {}) =>
      fetch(`${url}api${path}`, {
        ...init,
        headers: {
          ...auth,
          ...(init.body ? { 'Content-Type': 'application/json' } : {}),
          ...(init.headers as Record<string, string>),
        },
      }),
    async close() {
      await browser.close().catch(() => {});
      await stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function waitForEditor(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as any).__tcd?.graph?._nodes?.length > 0, null, { timeout: WAIT });
  await page.waitForFunction(() => (window as any).__tcd.session.connection === 'open', null, { timeout: WAIT });
}

/**
 * Polls `read` until it gives `want` (deep equality): for state that follows an action a little later (a React
 * render, a debounced checkpoint, a server round trip). On timeout it fails like assert.deepEqual with the last value.
 * @example await eventually(() => h.page.title(), 'my fox - tcd-studio');
 */
export async function eventually<T>(
  read: () => Promise<T>,
  want: T,
  message = 'the page reached this state',
  timeout = WAIT,
): Promise<void> {
  const deadline = Date.now() + timeout;
  for (let pause = 20; ; pause = Math.min(500, pause * 2)) {
    const got = await read();
    if (isDeepStrictEqual(got, want)) return;
    if (Date.now() > deadline) assert.deepEqual(got, want, message);
    await new Promise((r) => setTimeout(r, pause));
  }
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** Client coordinates of a node-relative point (graph space offset from the node's top-left). */
export async function nodePoint(page: Page, nodeId: number, dx: number, dy: number): Promise<[number, number]> {
  return page.evaluate(
    ([id, x, y]) => {
      const ed = (window as any).__tcd.editor;
      const n = ed.nodeById(id);
      return ed.toClient([n.pos[0] + x, n.pos[1] + y]);
    },
    [nodeId, dx, dy] as const,
  );
}

/** Client coordinates of a slot's connection dot. */
export async function slotPoint(
  page: Page,
  nodeId: number,
  kind: 'input' | 'output',
  slot: number,
): Promise<[number, number]> {
  return page.evaluate(
    ([id, k, s]) => {
      const ed = (window as any).__tcd.editor;
      const n = ed.nodeById(id);
      const p = k === 'input' ? n.getInputPos(s) : n.getOutputPos(s);
      return ed.toClient([p[0], p[1]]);
    },
    [nodeId, kind, slot] as const,
  );
}

export async function drag(page: Page, from: [number, number], to: [number, number]): Promise<void> {
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down();
  await page.mouse.move((from[0] + to[0]) / 2, (from[1] + to[1]) / 2, { steps: 5 });
  await page.mouse.move(to[0], to[1], { steps: 5 });
  await page.mouse.up();
}

/** Client coordinates of a visible canvas point with no node or group within `margin` graph units, and nothing over it. */
export async function emptyPoint(page: Page, margin = 60): Promise<[number, number]> {
  // A string, not a function: tsx would wrap inner arrow functions in a __name() helper the page lacks.
  const p = await page.evaluate(`(() => {
    const { editor, graph, canvas } = window.__tcd;
    const m = ${margin}, r = canvas.canvas.getBoundingClientRect();
    function busy(gx, gy) {
      for (let dx = -m; dx <= m; dx += 15) for (let dy = -m; dy <= m; dy += 15) {
        if (graph.getNodeOnPos(gx + dx, gy + dy) || graph.getGroupOnPos?.(gx + dx, gy + dy)) return true;
      }
      return false;
    }
    for (let y = 120; y < r.height - 60; y += 30) {
      for (let x = 60; x < r.width - 60; x += 30) {
        const [gx, gy] = canvas.ds.convertCanvasToOffset([x, y]);
        if (busy(gx, gy)) continue;
        const c = editor.toClient([gx, gy]);
        // the canvas itself must be what a click there reaches (not a panel, toast or dialog over it)
        if (document.elementFromPoint(c[0], c[1]) === canvas.canvas) return c;
      }
    }
    return null;
  })()`);
  if (!p) throw new Error('no empty canvas area visible');
  return p as [number, number];
}

/** Clicks the context-menu entry whose text is `text` (litegraph's DOM menus), waiting for it to appear. */
export async function menuClick(page: Page, text: string): Promise<void> {
  const entry = page
    .locator('.litecontextmenu .litemenu-entry', {
      hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`),
    })
    .last();
  await entry.waitFor({ timeout: WAIT });
  await entry.click();
}

/**
 * Right-clicks the canvas at the point `where` gives and clicks the menu entry `text`. The right-click is made again,
 * at a point computed again, until a menu holding the entry is open: clean CI runs saw a first right-click open no
 * menu at all (lost while the page was starved) and one land on something else than empty canvas. Stale menus are
 * closed between tries as litegraph closes them (closeAllContextMenus).
 */
export async function canvasMenuClick(page: Page, where: () => Promise<[number, number]>, text: string): Promise<void> {
  const deadline = Date.now() + WAIT;
  for (let attempt = 1; ; attempt++) {
    const at = await where();
    await page.mouse.click(at[0], at[1], { button: 'right' });
    const opened = await page
      .locator('.litecontextmenu .litemenu-entry')
      .first()
      .waitFor({ timeout: 10_000 })
      .then(
        () => true,
        () => false,
      );
    if (opened && (await menuEntries(page)).includes(text)) return menuClick(page, text);
    if (Date.now() > deadline) throw new Error(`no canvas menu with "${text}" after ${attempt} right-clicks`);
    await page.evaluate(() =>
      document.querySelectorAll('.litecontextmenu').forEach((m) => {
        const menu = m as Element & { close?: () => void };
        if (typeof menu.close === 'function') menu.close();
        else menu.remove();
      }),
    );
  }
}

/** Resolves after the page has drawn two frames: input queued before has been handled, litegraph has drawn. */
export async function frames(page: Page): Promise<void> {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/**
 * Double-clicks at the point `where` gives until `taken` holds, at most 5 times: litegraph counts two clicks as a
 * double-click only when their events' time stamps are within 300 ms, which a starved browser can stretch. `taken`
 * must be state that the double-click's handler sets at once (it is read after the next two frames).
 */
export async function dblclickUntil(
  page: Page,
  where: () => Promise<[number, number]>,
  taken: () => Promise<boolean>,
): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    await frames(page);
    if (await taken()) return;
    const at = await where();
    await page.mouse.dblclick(at[0], at[1]);
  }
  await frames(page);
  assert.ok(await taken(), 'the double-click was taken');
}

/** Texts of the entries of the newest open context menu. */
export async function menuEntries(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const menus = [...document.querySelectorAll('.litecontextmenu')];
    const last = menus[menus.length - 1];
    return last ? [...last.querySelectorAll('.litemenu-entry')].map((e) => (e.textContent ?? '').trim()) : [];
  });
}

/** Opens a template through the Templates dialog, by mouse (`file`: 'demo.json', or 'default.json' for the default). */
export async function openTemplate(page: Page, file: string): Promise<void> {
  await openFromTemplates(page, `li.template[data-template="${file}"]`);
}

/** Opens the workflow saved on the server as `name` from the Templates dialog (its "Saved on the server" list). */
export async function openSaved(page: Page, name: string): Promise<void> {
  await openFromTemplates(page, `li.saved[data-saved="${name}"]`);
}

async function openFromTemplates(page: Page, entry: string): Promise<void> {
  await page.click('[data-testid=templates]');
  const card = page.locator(`[data-testid=templates-dialog] ${entry}`);
  await card.waitFor({ timeout: WAIT });
  await card.getByRole('button', { name: 'Open' }).click();
  await page.locator('[data-testid=templates-dialog]').waitFor({ state: 'detached' });
}
