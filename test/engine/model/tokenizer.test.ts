/**
 * CLIP tokenizer against the reference tokenizer's ids (prompt_ids.json), the token-id tensors the reference
 * pipelines fed their text encoders (sd1/sdxl tiny cases), Python's html.unescape, and ComfyUI's prompt-weight
 * and window rules (expected values derived by hand from ComfyUI's sd1_clip.py algorithm).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  tokenize,
  tokenizeWindows,
  parseWeights,
  htmlUnescape,
  cleanText,
  BOS_TOKEN,
  EOS_TOKEN,
} from '../../../server/engine/model/tokenizer.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { fixtureJson, fixturePath, fixtureSkip } from '../../helpers/fixtures.js';

const FOX = 'a red fox in the snow '; // 6 tokens: 320 736 3240 530 518 2583

/** the window's content tokens: between BOS and the first EOS */
function content(ids: Int32Array): number[] {
  assert.equal(ids[0], BOS_TOKEN);
  const end = ids.indexOf(EOS_TOKEN, 1);
  assert.ok(end > 0, 'window has no EOS');
  return [...ids.slice(1, end)];
}

test('tokenize equals the reference ids for every prompt in prompt_ids.json', { skip: fixtureSkip() }, () => {
  const ref = fixtureJson<Record<string, number[]>>('prompt_ids.json');
  assert.ok(Object.keys(ref).length >= 10);
  for (const [prompt, ids] of Object.entries(ref)) assert.deepEqual(tokenize(prompt), ids, JSON.stringify(prompt));
});

test('SD1 windows equal the text/ids tensor of sd1_tiny_cases (pad = EOS)', { skip: fixtureSkip() }, () => {
  const prompts: string[] = fixtureJson('manifest.json').cases.sd1_tiny.prompts;
  const ids = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors')).readFloat32('text/ids');
  assert.equal(ids.length, prompts.length * 77);
  prompts.forEach((p, b) => {
    const w = tokenizeWindows(p, { padToken: EOS_TOKEN });
    assert.equal(w.ids.length, 1);
    assert.deepEqual([...w.ids[0]], [...ids.slice(b * 77, (b + 1) * 77)], JSON.stringify(p));
    assert.ok(
      w.weights[0].every((x) => x === 1),
      'plain text has weight 1 everywhere',
    );
  });
});

test(
  'SDXL windows equal text/ids_l (pad = EOS) and text/ids_g (pad = 0) of sdxl_tiny_cases',
  { skip: fixtureSkip() },
  () => {
    const prompts: string[] = fixtureJson('manifest.json').cases.sdxl_tiny.prompts;
    const f = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
    for (const [key, pad] of [
      ['text/ids_l', EOS_TOKEN],
      ['text/ids_g', 0],
    ] as const) {
      const ids = f.readFloat32(key);
      prompts.forEach((p, b) => {
        const w = tokenizeWindows(p, { padToken: pad });
        assert.deepEqual([...w.ids[0]], [...ids.slice(b * 77, (b + 1) * 77)], `${key} ${JSON.stringify(p)}`);
      });
    }
  },
);

test('long prompts split into several 77-token windows, never truncated', { skip: fixtureSkip() }, () => {
  const prompt = FOX.repeat(14);
  const all = fixtureJson<Record<string, number[]>>('prompt_ids.json')[prompt];
  assert.equal(all.length, 84);
  const w = tokenizeWindows(prompt, { padToken: 0 });
  assert.equal(w.ids.length, 2);
  for (const ids of w.ids) assert.equal(ids.length, 77);
  // one segment of >= 8 tokens is split exactly at the 75-token boundary
  assert.deepEqual(content(w.ids[0]), all.slice(0, 75));
  assert.equal(w.ids[0][76], EOS_TOKEN);
  assert.deepEqual(content(w.ids[1]), all.slice(75));
  assert.deepEqual([...w.ids[1].slice(11)], new Array(66).fill(0), 'second window is padded with the pad token');
  // 200 tokens -> 75 + 75 + 50
  const big = tokenizeWindows('cat '.repeat(200), { padToken: EOS_TOKEN });
  assert.deepEqual(
    big.ids.map((ids) => content(ids).length),
    [75, 75, 50],
  );
  // exactly 75 tokens still fit in one window
  assert.equal(tokenizeWindows('cat '.repeat(75), { padToken: 0 }).ids.length, 1);
  assert.equal(tokenizeWindows('cat '.repeat(76), { padToken: 0 }).ids.length, 2);
});

test('a short weighted segment that would straddle two windows moves whole to the next one (ComfyUI)', () => {
  const plain = 'cat '.repeat(70); // 70 tokens
  const w = tokenizeWindows(`${plain}(${FOX}:1.2)`, { padToken: 0 });
  assert.equal(w.ids.length, 2);
  assert.equal(content(w.ids[0]).length, 70);
  assert.deepEqual([...w.ids[0].slice(71, 77)], [EOS_TOKEN, 0, 0, 0, 0, 0], 'first window closed early and padded');
  assert.deepEqual(content(w.ids[1]), [320, 736, 3240, 530, 518, 2583]);
  assert.deepEqual([...w.weights[1].slice(0, 8)], [1, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 1].map(Math.fround));
});

test('empty prompt gives one window of BOS, EOS and padding', () => {
  for (const pad of [EOS_TOKEN, 0]) {
    const w = tokenizeWindows('', { padToken: pad });
    assert.equal(w.ids.length, 1);
    assert.deepEqual([...w.ids[0]], [BOS_TOKEN, EOS_TOKEN, ...new Array(75).fill(pad)]);
    assert.ok(w.weights[0].every((x) => x === 1));
  }
  assert.equal(tokenizeWindows('()', { padToken: 0 }).ids.length, 1);
});

test('ComfyUI emphasis syntax: weights, nesting, escapes, brackets, odd inputs', () => {
  assert.deepEqual(parseWeights('a (red:1.5) fox'), [
    ['a ', 1],
    ['red', 1.5],
    [' fox', 1],
  ]);
  assert.deepEqual(parseWeights('(cat)'), [['cat', 1.1]]);
  assert.deepEqual(parseWeights('((cat))'), [['cat', 1.1 * 1.1]]);
  assert.deepEqual(parseWeights('(a (b) c)'), [
    ['a ', 1.1],
    ['b', 1.1 * 1.1],
    [' c', 1.1],
  ]);
  assert.deepEqual(parseWeights('(cat:0.5) ((dog:1.3))'), [
    ['cat', 0.5],
    [' ', 1],
    ['dog', 1.3],
  ]);
  assert.deepEqual(parseWeights('\\(not weighted\\) (x)'), [
    ['(not weighted) ', 1],
    ['x', 1.1],
  ]);
  assert.deepEqual(parseWeights('[text]'), [['[text]', 1]]);
  assert.deepEqual(parseWeights('(a:b:1.2)'), [['a:b', 1.2]]); // last colon wins
  assert.deepEqual(parseWeights('(a:xyz)'), [['a:xyz', 1.1]]); // not a number: default emphasis
  assert.deepEqual(parseWeights('(a: 2 )'), [['a', 2]]); // Python float() allows spaces
  assert.deepEqual(parseWeights('(:1.5)'), [[':1.5', 1.1]]); // colon at index 0 is not a weight
  assert.deepEqual(parseWeights('a) b (c'), [['a) b (c', 1]]); // unbalanced: plain text
  assert.deepEqual(parseWeights('plain text'), [['plain text', 1]]);
});

test('window weights follow the segments; BOS/EOS/padding weigh 1', () => {
  const w = tokenizeWindows('a (cat:1.5) in a (hat)', { padToken: EOS_TOKEN });
  assert.deepEqual([...w.ids[0].slice(0, 8)], [BOS_TOKEN, 320, 2368, 530, 320, 3801, EOS_TOKEN, EOS_TOKEN]);
  assert.deepEqual([...w.weights[0].slice(0, 8)], [1, 1, 1.5, 1, 1, Math.fround(1.1), 1, 1]);
  assert.ok(w.weights[0].slice(6).every((x) => x === 1));
  // escaped parentheses are tokenized as text
  assert.deepEqual(content(tokenizeWindows('\\(cat\\)', { padToken: 0 }).ids[0]), tokenize('(cat)'));
});

test("html.unescape matches Python's html.unescape", () => {
  // expected values printed by CPython 3.11 html.unescape
  const cases: Array<[string, string]> = [
    ['&amp', '&'],
    ['&copy2024', '\u00a92024'],
    ['&ampx', '&x'],
    ['&notin;', '\u2209'],
    ['&notit;', '\u00acit;'],
    ['&#128512;', '\ud83d\ude00'],
    ['&#x1F600', '\ud83d\ude00'],
    ['&#150;', '\u2013'],
    ['&#0;', '\ufffd'],
    ['&#xD800;', '\ufffd'],
    ['&#1;', ''],
    ['&AMP;', '&'],
    ['&Amp;', '&Amp;'],
    ['&NewLine;', '\n'],
    ['&frac12;x', '\u00bdx'],
    ['&lt;&gt', '<>'],
    ['&#39', "'"],
    ['&unknownentity;', '&unknownentity;'],
    ['& amp;', '& amp;'],
    ['&amp;amp;', '&amp;'],
  ];
  for (const [input, expected] of cases) assert.equal(htmlUnescape(input), expected, input);
});

test('text cleaning: curly quotes, full-width forms, NFC, ligatures, control characters, whitespace', () => {
  assert.deepEqual(tokenize('don\u2019t \u201cstop\u201d'), tokenize('don\'t "stop"'));
  assert.deepEqual(tokenize('\uff43\uff41\uff54\u3000\uff11\uff12'), tokenize('cat 12'));
  assert.deepEqual(tokenize('cafe\u0301'), tokenize('caf\u00e9'));
  assert.deepEqual(tokenize('\ufb01ne o\ufb03ce'), tokenize('fine office'));
  assert.equal(cleanText('\ufeffA\u0007B\u00a0\u2028 C  '), 'ab c');
  assert.equal(cleanText('x\x1b[31mred\x1b[0m'), 'xred');
  assert.equal(cleanText('&amp;lt;b&amp;gt;'), '<b>'); // ftfy unescapes repeatedly, then html.unescape twice
});

test('tokenizing is fast once the vocabulary is loaded', () => {
  tokenize('warm up');
  const prompt =
    'a highly detailed cinematic portrait of an astronaut, volumetric lighting, octane render, 8k, ' +
    'trending on artstation, by greg rutkowski and alphonse mucha, (masterpiece:1.2), bokeh';
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) tokenizeWindows(prompt + ' ' + i, { padToken: 0 });
  const ms = (performance.now() - t0) / 100;
  assert.ok(ms < 20, `${ms.toFixed(2)} ms per prompt`);
  console.log(`tokenizeWindows: ${ms.toFixed(3)} ms per prompt`);
});
