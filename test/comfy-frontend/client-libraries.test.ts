/**
 * Issue 15 point 3: ComfyUI client libraries from npm, driven through their README flows against a real tcd-studio
 * server (demo model, real port, real websocket), unchanged: @saintno/comfyui-sdk 0.3.1 (posts /prompt as text/plain)
 * and @stable-canvas/comfyui-client 1.5.9 (its pipeline reads images from SaveImageWebsocket frames). The server runs
 * with previews off (--preview-method none, ComfyUI's own default), since a pipeline collects every image frame of
 * its prompt as a result.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ComfyApi, CallWrapper, ComfyPool, EQueueMode, PromptBuilder } from '@saintno/comfyui-sdk';
import { BasePipe, Client, Workflow, outToB64Urls } from '@stable-canvas/comfyui-client';
import { serve } from '../../server/host.js';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { decodePng, encodePng } from '../../server/storage/png.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';

const DEMO_CACHE = `test-output/client-test-models/${DEMO_CHECKPOINT_NAME}`;
let s: RunningServer<NodeServices>;
let root: string;
const host = () => s.url.replace(/^http:\/\//, '');

/** ComfyUI's default API prompt (ids 3..9), small: 64 px, 2 steps. */
function defaultPrompt(): Record<string, any> {
  return {
    '3': {
      class_type: 'KSampler',
      inputs: {
        seed: 1,
        steps: 2,
        cfg: 1,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
    },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] } },
  };
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tcd-clients-'));
  mkdirSync(join(root, 'models', 'checkpoints'), { recursive: true });
  if (existsSync(DEMO_CACHE)) copyFileSync(DEMO_CACHE, join(root, 'models', 'checkpoints', DEMO_CHECKPOINT_NAME));
  s = await serve({
    port: 0,
    models: join(root, 'models'),
    data: join(root, 'data'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    previews: false,
    log: () => {},
  });
});
after(async () => {
  await s?.close();
  rmSync(root, { recursive: true, force: true });
  // something in the client libraries keeps this test process alive after every client was closed (not a socket
  // or timer of ours: none is left open): end it once the results are out, rather than hang the suite
  setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
});

test(
  '@saintno/comfyui-sdk: README basic usage (PromptBuilder + CallWrapper), ComfyPool, and the API methods it lists',
  { timeout: 240_000 },
  async () => {
    const api = new ComfyApi(s.url).init();
    await api.waitForReady();
    const builder = () =>
      new PromptBuilder(
        defaultPrompt(),
        [
          'positive',
          'negative',
          'checkpoint',
          'seed',
          'batch',
          'step',
          'cfg',
          'sampler',
          'sheduler',
          'width',
          'height',
        ],
        ['images'],
      )
        .setInputNode('checkpoint', '4.inputs.ckpt_name')
        .setInputNode('seed', '3.inputs.seed')
        .setInputNode('batch', '5.inputs.batch_size')
        .setInputNode('negative', '7.inputs.text')
        .setInputNode('positive', '6.inputs.text')
        .setInputNode('cfg', '3.inputs.cfg')
        .setInputNode('sampler', '3.inputs.sampler_name')
        .setInputNode('sheduler', '3.inputs.scheduler')
        .setInputNode('step', '3.inputs.steps')
        .setInputNode('width', '5.inputs.width')
        .setInputNode('height', '5.inputs.height')
        .setOutputNode('images', '9')
        .input('checkpoint', DEMO_CHECKPOINT_NAME, api.osType)
        .input('seed', 7)
        .input('step', 2)
        .input('cfg', 1)
        .input('sampler', 'euler')
        .input('sheduler', 'normal')
        .input('width', 64)
        .input('height', 64)
        .input('batch', 1)
        .input('positive', 'A picture of cute dog on the street');
    const progress: number[] = [];
    let failed: Error | null = null;
    const result = await new CallWrapper(api, builder())
      .onProgress((p) => progress.push(p.value))
      .onFailed((e) => {
        failed = e;
      })
      .run();
    assert.equal(failed, null);
    assert.ok(result, 'the wrapper returned a result');
    const images = (result as any).images.images as { filename: string; subfolder: string; type: string }[];
    assert.equal(images.length, 1);
    const png = decodePng(Buffer.from(await (await fetch(api.getPathImage(images[0] as any))).arrayBuffer()));
    assert.deepEqual([png.width, png.height], [64, 64]);
    assert.ok(progress.length >= 2, `progress events: ${progress}`);

    // ComfyPool over two clients of the same server (the README's multi-instance flow)
    const members = [new ComfyApi(s.url), new ComfyApi(s.url)];
    const pool = new ComfyPool(members, EQueueMode.PICK_ZERO);
    const urls = await pool.run(async (client) => {
      const r = await new CallWrapper(client, builder().input('seed', 8)).run();
      return (r as any).images.images.map((img: any) => client.getPathImage(img)) as string[];
    });
    assert.equal(urls.length, 1);
    assert.equal((await fetch(urls[0])).status, 200);
    pool.destroy();
    for (const m of members) m.destroy();

    // the methods the README lists, each against the real route
    assert.deepEqual(await api.getExtensions(), []);
    assert.ok((await api.getCheckpoints()).includes(DEMO_CHECKPOINT_NAME));
    assert.ok(Array.isArray(await api.getLoras()));
    assert.ok(Array.isArray(await api.getEmbeddings()));
    const samplers = await api.getSamplerInfo();
    assert.ok(JSON.stringify(samplers).includes('euler'));
    assert.ok((await api.getNodeDefs('KSampler'))?.KSampler);
    assert.equal((await api.getSystemStats()).devices.length > 0, true);
    assert.ok(Object.keys(await api.getHistories(10)).length >= 2);
    assert.equal((await api.getQueue()).queue_running.length, 0);
    assert.deepEqual(await api.getUserConfig(), { storage: 'server', migrated: true });
    await api.storeSetting('sdk.test', { a: 1 });
    await api.storeSettings({ 'sdk.other': 'x' });
    assert.deepEqual(await api.getSetting('sdk.test'), { a: 1 });
    assert.equal((await api.getSettings())['sdk.other'], 'x');
    await api.storeUserData('notes/a.json', { hello: 'world' });
    assert.deepEqual(await (await api.getUserData('notes/a.json')).json(), { hello: 'world' });
    await api.moveUserData('notes/a.json', 'notes/b.json');
    assert.deepEqual(await api.listUserData('notes'), ['b.json']);
    await api.deleteUserData('notes/b.json');
    assert.equal((await api.getUserData('notes/b.json')).status, 404);
    const up = await api.uploadImage(encodePng(new Uint8Array(4 * 4 * 3).fill(9), 4, 4, 3), 'sdk.png');
    assert.ok(up && up.info.filename === 'sdk.png', JSON.stringify(up));
    assert.ok(await api.freeMemory(false, false));
    await api.interrupt();
    api.destroy();
  },
);

test('@saintno/comfyui-sdk: bearer-token authentication from the README reaches a server that wants a token', async () => {
  const stub: StubServer = await startStubServer({ token: 'sdk-secret', slowDelayMs: 1 });
  try {
    const denied = new ComfyApi(stub.url, 'nobody');
    assert.equal((await denied.fetchApi('/queue')).status, 401);
    const api = new ComfyApi(stub.url, 'sdk-bearer', {
      credentials: { type: 'bearer_token', token: 'sdk-secret' },
    }).init();
    await api.waitForReady();
    const r = await api.queuePrompt(null, chainPrompt());
    assert.match(r.prompt_id, /^[\w-]+$/);
    api.destroy();
  } finally {
    await stub.stop();
  }
});

test(
  '@stable-canvas/comfyui-client: README quick start (BasePipe over SaveImageWebsocket), workflow, enqueue, routes',
  { timeout: 240_000 },
  async () => {
    const client = new Client({ api_host: host(), WebSocket: WebSocket as any, fetch });
    const [stats] = await Promise.all([client.getSystemStats(), client.connect()]);
    assert.ok(stats.devices.length > 0);
    // quick start "using pipeline": images come back over the websocket (SaveImageWebsocket)
    const output = await new BasePipe()
      .with(client)
      .model(DEMO_CHECKPOINT_NAME)
      .prompt('A beautiful sunset over the mountains')
      .negative('Low quality, blurry')
      .size(64, 64)
      .steps(2)
      .cfg(1)
      .sampler('euler')
      .scheduler('normal')
      .seed(3)
      .save()
      .wait();
    assert.equal(output.images.length, 1);
    assert.equal(output.images[0].mime, 'image/png');
    const fromWs = decodePng(Buffer.from(output.images[0].data as ArrayBuffer));
    assert.deepEqual([fromWs.width, fromWs.height], [64, 64]);
    // quick start "using workflow" (the README's minimal case, SaveImage to files)
    const wk = new Workflow();
    const cls = wk.classes;
    const [model, clip, vae] = cls.CheckpointLoaderSimple({ ckpt_name: DEMO_CHECKPOINT_NAME });
    const enc = (text: string) => cls.CLIPTextEncode({ text, clip })[0];
    const [samples] = cls.KSampler({
      seed: 5,
      steps: 2,
      cfg: 1,
      sampler_name: 'euler',
      scheduler: 'normal',
      denoise: 1,
      model,
      positive: enc('best quality'),
      negative: enc('worst quality'),
      latent_image: cls.EmptyLatentImage({ width: 64, height: 64, batch_size: 1 })[0],
    });
    cls.SaveImage({ filename_prefix: 'from-sc-comfy-ui-client', images: cls.VAEDecode({ samples, vae })[0] });
    const out = await wk.invoke(client);
    const b64 = await outToB64Urls(out);
    assert.equal(b64.length, 1);
    const fromUrl = decodePng(Buffer.from(b64[0].replace(/^data:image\/[a-z]+;base64,/, ''), 'base64'));
    assert.deepEqual([fromUrl.width, fromUrl.height], [64, 64]);
    // enqueue with a progress callback, then the same prompt by polling
    const prog: number[] = [];
    const p1 = defaultPrompt();
    p1['4'].inputs.ckpt_name = DEMO_CHECKPOINT_NAME;
    const r1 = await client.enqueue(p1 as any, {
      progress: ({ value }) => {
        prog.push(value);
      },
    });
    assert.equal(r1.images.length, 1);
    assert.ok(prog.length >= 2);
    const p2 = defaultPrompt();
    p2['3'].inputs.seed = 99;
    p2['4'].inputs.ckpt_name = DEMO_CHECKPOINT_NAME;
    const r2 = await client.enqueue_polling(p2 as any);
    assert.equal(r2.images.length, 1);
    // the routes table
    assert.deepEqual(await client.getExtensions(), []);
    assert.ok(Array.isArray(await client.getEmbeddings()));
    assert.ok((await client.getNodeDefs()).SaveImageWebsocket);
    assert.ok((await client.getSDModels()).includes(DEMO_CHECKPOINT_NAME));
    assert.ok((await client.getSamplers()).includes('euler'));
    assert.ok((await client.getSchedulers()).includes('normal'));
    assert.ok(Array.isArray(await client.getLoRAs()));
    assert.ok(Array.isArray(await client.getVAEs()));
    const q = await client.getQueue();
    assert.ok(Array.isArray(q.Running) && Array.isArray(q.Pending));
    const hist = await client.getHistory();
    assert.ok(hist.History.length >= 3);
    await client.deleteItem('history', (hist.History[0].prompt as unknown as unknown[])[1]);
    assert.equal((await client.getHistory()).History.length, hist.History.length - 1);
    await client.clearItems('history');
    assert.equal((await client.getHistory()).History.length, 0);
    await client.interrupt();
    await client.free({ unload_models: false, free_memory: false });
    client.close();
  },
);
