/**
 * Issue 18 finding 3: one accepted prompt (the demo model at 4096x4096) grew the engine to 22 GB until the kernel
 * killed the whole server. Now the engine's memory admission refuses a call whose activations cannot fit, naming
 * the largest size that does; VAEDecode falls back to tiled decoding when a whole decode would not fit; and the
 * engine runs in a child process with a memory limit, so what slips through kills only the engine and the prompt is
 * reported failed. Runs the `serve` server (demo model) in a child process with a small engine budget
 * (TCD_RAM_BUDGET_MB=200) so the limits are reached at sizes a CPU runs in seconds.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import { spawnStubServer, quick, type ChildServer } from './child-harness.js';
import { api, waitHistory, WsClient } from '../server/protocol-client.js';
import { demoPrompt } from '../server/demo-prompt.js';

let s: ChildServer;
before(async () => {
  s = await spawnStubServer({ serve: true, env: { TCD_RAM_BUDGET_MB: '200', TCD_EP: 'cpu' } });
});
after(async () => {
  await s.stop();
});

async function run(prompt: unknown, timeoutMs = 180000): Promise<{ id: string; h: any }> {
  const r = await api(s.url, 'POST', '/prompt', { prompt, client_id: 'mem' });
  assert.equal(r.status, 200, r.text);
  return { id: r.json.prompt_id, h: await waitHistory(s.url, r.json.prompt_id, timeoutMs) };
}
const errorOf = (h: any) => h.status.messages.find((m: [string, unknown]) => m[0] === 'execution_error')?.[1];
async function pngSize(h: any, node: string): Promise<[number, number, Buffer]> {
  const img = h.outputs[node].images[0];
  const v = await api(
    s.url,
    'GET',
    `/view?filename=${encodeURIComponent(img.filename)}&type=${img.type}&subfolder=${img.subfolder}`,
  );
  const png = PNG.sync.read(v.bytes);
  return [png.width, png.height, png.data];
}

test('finding 3: a 4096x4096 prompt is refused by memory admission, naming the largest size that fits', async () => {
  const witness = api(s.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 3, prefix: 'witness' }) });
  const t0 = Date.now();
  const { h } = await run(demoPrompt({ size: 4096, prefix: 'huge' }));
  assert.ok(Date.now() - t0 < 60000, `refusal took ${Date.now() - t0} ms`);
  assert.equal(h.status.status_str, 'error');
  const err = errorOf(h);
  assert.equal(err.node_type, 'TCDSampler');
  assert.equal(err.exception_type, 'MemoryAdmissionError');
  const m = /4096x4096 needs about ([\d.]+) GiB .* allows 0\.2 GiB; the largest size that fits is (\d+)x(\d+)/.exec(
    err.exception_message,
  );
  assert.ok(m, err.exception_message);
  assert.ok(Number(m[1]) > 10, 'the attention over 65,536 tokens is counted');
  assert.equal(m[2], m[3], 'same aspect ratio');
  assert.ok(Number(m[2]) >= 256 && Number(m[2]) < 4096 && Number(m[2]) % 64 === 0, m[2]);
  assert.ok(s.alive(), s.stderr().slice(-2000));
  const w = (await witness).json.prompt_id;
  assert.equal((await waitHistory(s.url, w, 180000)).status.status_str, 'success', 'the prompt queued alongside ran');
  assert.equal((await quick(s.url, 'GET', '/prompt')).status, 200);
});

test('finding 3: a decode too large for the budget is tiled automatically and the image comes out whole', async () => {
  const ws = await WsClient.connect(s.url, 'mem');
  try {
    const { id, h } = await run(demoPrompt({ size: 768, steps: 1, prefix: 'tiled' }));
    assert.equal(h.status.status_str, 'success', JSON.stringify(errorOf(h)));
    const [w, hgt, px] = await pngSize(h, '9');
    assert.deepEqual([w, hgt], [768, 768]);
    const decodeSteps = ws.forPrompt(id).filter((e) => e.type === 'progress' && e.data.node === '8');
    assert.equal(decodeSteps.at(-1)?.data.max, 4, 'a 96x96 latent in 64-latent tiles overlapping by 8: 2 x 2 tiles');
    // every pixel was written (no uncovered hole left black and opaque-zero)
    let zeros = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] === 0 && px[i + 1] === 0 && px[i + 2] === 0) zeros++;
    assert.ok(zeros < (w * hgt) / 100, `${zeros} black pixels`);
  } finally {
    ws.close();
  }
});

test("VAEDecodeTiled: ComfyUI's inputs; one tile covering the latent equals VAEDecode exactly", async () => {
  const info = (await quick(s.url, 'GET', '/object_info/VAEDecodeTiled')).json.VAEDecodeTiled;
  assert.deepEqual(Object.keys(info.input.required), [
    'samples',
    'vae',
    'tile_size',
    'overlap',
    'temporal_size',
    'temporal_overlap',
  ]);
  assert.deepEqual(info.input.required.tile_size, ['INT', { default: 512, min: 64, max: 4096, step: 32 }]);
  assert.deepEqual(info.input.required.overlap, ['INT', { default: 64, min: 0, max: 4096, step: 32 }]);
  assert.deepEqual(info.output, ['IMAGE']);
  const p: Record<string, any> = demoPrompt({ seed: 7, prefix: 'plain' });
  p['10'] = {
    class_type: 'VAEDecodeTiled',
    inputs: { samples: ['3', 0], vae: ['4', 2], tile_size: 512, overlap: 64, temporal_size: 64, temporal_overlap: 8 },
  };
  p['11'] = { class_type: 'SaveImage', inputs: { images: ['10', 0], filename_prefix: 'tiled1' } };
  const { h } = await run(p);
  assert.equal(h.status.status_str, 'success', JSON.stringify(errorOf(h)));
  const [, , plain] = await pngSize(h, '9');
  const [, , tiled] = await pngSize(h, '11');
  assert.ok(plain.equals(tiled));
});

test('finding 3: the engine runs in a child process; past its memory limit only the engine dies and the prompt fails', async () => {
  const small = await spawnStubServer({ serve: true, env: { TCD_ENGINE_MAX_RSS_MB: '40', TCD_EP: 'cpu' } });
  try {
    const r = await api(small.url, 'POST', '/prompt', { prompt: demoPrompt({ prefix: 'limit' }) });
    const h = await waitHistory(small.url, r.json.prompt_id, 120000);
    assert.equal(h.status.status_str, 'error');
    assert.match(errorOf(h).exception_message, /over its memory limit of 40 MiB/);
    assert.ok(small.alive(), small.stderr().slice(-2000));
    assert.equal((await quick(small.url, 'GET', '/prompt')).status, 200);
    // the next prompt starts a fresh engine (which meets the same limit): the server keeps failing prompts, not dying
    const again = await api(small.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 9, prefix: 'limit' }) });
    assert.match(errorOf(await waitHistory(small.url, again.json.prompt_id, 120000)).exception_message, /memory limit/);
    assert.ok(small.alive());
  } finally {
    await small.stop();
  }
});
