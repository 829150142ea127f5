// The built editor (dist/client, what `npm start` serves) works offline: its HTML, CSS and JS reference no other
// host. Absolute URLs may appear only as XML namespace names and in error-message text, never as something loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ensureClient } from './harness.js';

const DIST = 'dist/client';

/** Absolute URLs that are identifiers or message text, never fetched: SVG/MathML/XLink/XML namespaces, React's error-decoder link. */
const INERT = [
  /^http:\/\/www\.w3\.org\/(2000\/svg|1999\/xlink|XML\/1998\/namespace|1998\/Math\/MathML|1999\/xhtml)$/,
  /^https:\/\/react\.dev\/errors\/$/,
];

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}

ensureClient();
const all = files(DIST);
// Source maps are for devtools only (never loaded by the page) and carry library comments.
const served = all.filter((f) => /\.(html|js|css)$/.test(f));

test('the build has an index.html, a script and a stylesheet', () => {
  assert.ok(served.some((f) => f.endsWith('index.html')));
  assert.ok(served.some((f) => f.endsWith('.js')));
  assert.ok(served.some((f) => f.endsWith('.css')));
});

test('index.html and the CSS load only relative URLs', () => {
  for (const f of served.filter((x) => /\.(html|css)$/.test(x))) {
    const text = readFileSync(f, 'utf8');
    const refs = [
      ...[...text.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]),
      ...[...text.matchAll(/url\(\s*["']?([^"')]+)["']?\s*\)/gi)].map((m) => m[1]),
      ...[...text.matchAll(/@import\s+["']([^"']+)["']/gi)].map((m) => m[1]),
    ];
    for (const r of refs) assert.ok(!/^(https?:)?\/\//i.test(r), `${relative(DIST, f)} references ${r}`);
    assert.ok(
      !/https?:\/\//i.test(text.replace(/\/\*[\s\S]*?\*\//g, '')),
      `${relative(DIST, f)} holds an absolute URL outside comments`,
    );
  }
});

test('the JS imports, fetches and links nothing from another host; other absolute URLs are inert', () => {
  for (const f of served.filter((x) => x.endsWith('.js'))) {
    // Licence banners and comments are allowed to name URLs.
    const text = readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    const loads = [
      /\bimport\s*\(\s*["'`](https?:)?\/\//i,
      /\bfrom\s*["'](https?:)?\/\//i,
      /\bimport\s*["'](https?:)?\/\//i,
      /\bfetch\s*\(\s*["'`](https?:)?\/\//i,
      /new\s+(?:URL|WebSocket|Worker|EventSource)\s*\(\s*["'`](https?:|wss?:)?\/\//i,
      /\b(?:src|href)\s*=\s*["'`](https?:)?\/\//i,
      /importScripts\s*\(/,
    ];
    for (const re of loads) assert.equal(text.match(re)?.[0], undefined, `${relative(DIST, f)}: ${re}`);
    const urls = [...new Set([...text.matchAll(/https?:\/\/[^\s"'`)\\<>]+/g)].map((m) => m[0]))];
    const unexpected = urls.filter((u) => !INERT.some((re) => re.test(u)));
    assert.deepEqual(unexpected, [], `${relative(DIST, f)}: absolute URLs not known to be inert`);
  }
});
