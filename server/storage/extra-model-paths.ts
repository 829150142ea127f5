/**
 * ComfyUI's extra_model_paths.yaml: named sections, each with an optional `base_path` and `folder: path` entries;
 * a value may list several paths, one per line (a `|` block). Relative paths are taken from base_path, a relative
 * base_path from the file's folder; `~` is the home folder. `is_default` is accepted and ignored. Only this subset of
 * YAML is read (scalars, `|`/`>` blocks, comments): the file format ComfyUI documents, not YAML in general.
 * Example: parseExtraModelPaths(text, '/srv') -> { checkpoints: ['/mnt/models/sd'], loras: [...] }
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';

export class ExtraModelPathsError extends Error {}

type Section = Record<string, string>;

function unquote(v: string): string {
  const t = v.trim();
  if ((t.startsWith('"') && t.endsWith('"')) || (t.startsWith("'") && t.endsWith("'"))) return t.slice(1, -1);
  return t;
}

function stripComment(line: string): string {
  // a # starts a comment at the line start or after a space (paths may hold # otherwise)
  const m = /(^|\s)#/.exec(line);
  return m ? line.slice(0, m.index) : line;
}

/** Sections -> {key: raw value} (a block's lines joined by newlines). */
function parseSections(text: string, file: string): Record<string, Section> {
  const out: Record<string, Section> = {};
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let section: Section | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i]).replace(/\s+$/, '');
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    const m = /^([^:]+):\s*(.*)$/.exec(line.trim());
    if (!m)
      throw new ExtraModelPathsError(`${file}:${i + 1}: expected "key: value", got ${JSON.stringify(line.trim())}`);
    const [, key, value] = m;
    if (indent === 0) {
      if (value)
        throw new ExtraModelPathsError(`${file}:${i + 1}: a top-level key names a section; "${key}" has a value`);
      section = out[unquote(key)] = {};
      continue;
    }
    if (!section) throw new ExtraModelPathsError(`${file}:${i + 1}: "${key}" is outside any section`);
    if (value === '|' || value === '>' || value === '|-' || value === '>-' || value === '') {
      // block: the following lines indented deeper than this key
      const block: string[] = [];
      while (i + 1 < lines.length) {
        const next = stripComment(lines[i + 1]).replace(/\s+$/, '');
        if (next.trim() && next.length - next.trimStart().length <= indent) break;
        i++;
        if (next.trim()) block.push(next.trim());
      }
      section[unquote(key)] = block.join('\n');
    } else section[unquote(key)] = unquote(value);
  }
  return out;
}

function expand(p: string, base: string): string {
  const home = p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p;
  return isAbsolute(home) ? resolve(home) : resolve(base, home);
}

/** folder name -> absolute folders, in file order. */
export function parseExtraModelPaths(
  text: string,
  fileDir: string,
  file = 'extra_model_paths.yaml',
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const section of Object.values(parseSections(text, file))) {
    const base = section.base_path ? expand(section.base_path, fileDir) : fileDir;
    for (const [key, value] of Object.entries(section)) {
      if (key === 'base_path' || key === 'is_default') continue;
      for (const p of value
        .split('\n')
        .map((s) => unquote(s))
        .filter(Boolean))
        (out[key] ??= []).push(expand(p, base));
    }
  }
  return out;
}

export function readExtraModelPaths(file: string): Record<string, string[]> {
  return parseExtraModelPaths(readFileSync(file, 'utf8'), dirname(resolve(file)), file);
}

/**
 * The extra folders for a server or CLI run: the given file (an error if unreadable), else extra_model_paths.yaml in
 * the working folder when there is one (ComfyUI reads it from its own folder), else none.
 */
export function loadExtraModelPaths(
  file: string | undefined,
  cwd = process.cwd(),
): { file: string | null; paths: Record<string, string[]> } {
  const f = file ? resolve(file) : resolve(cwd, 'extra_model_paths.yaml');
  if (!file) {
    try {
      readFileSync(f);
    } catch {
      return { file: null, paths: {} };
    }
  }
  return { file: f, paths: readExtraModelPaths(f) };
}
