/**
 * Issue 15 point 2 (/jobs, the model library routes, the template browser routes) and point 5 (links inside
 * models/ and extra_model_paths.yaml), against a real server running real prompts on the stub nodes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { api, sleep, waitHistory, WsClient } from '../server/protocol-client.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { decodePng } from '../../server/storage/png.js';
import { parseExtraModelPaths } from '../../server/storage/extra-model-paths.js';
import { ModelFolders } from '../../server/storage/model-folders.js';

const servers: StubServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});
async function start(o: Parameters<typeof startStubServer>[0] = {}) {
  const s = await startStubServer(o);
  servers.push(s);
  return s;
}

test('/jobs lists pending, running, completed, failed and cancelled prompts in ComfyUI shapes; /jobs/{id} adds outputs and workflow', async () => {
  const s = await start({ slowDelayMs: 5 });
  const ws = await WsClient.connect(s.url, 'jobs');
  const workflow = { id: 'wf-1', nodes: [], links: [], version: 0.4 };
  const post = async (prompt: unknown) =>
    (await api(s.url, 'POST', '/prompt', { prompt, client_id: 'jobs', extra_data: { extra_pnginfo: { workflow } } }))
      .json.prompt_id as string;
  const done = await post(chainPrompt({ seed: 1 }));
  await ws.untilDone(done);
  const failed = await post({
    '1': { class_type: 'StubLoad', inputs: { value: 1 } },
    '2': { class_type: 'StubThrow', inputs: { x: ['1', 0] } },
    '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: 'f' } },
  });
  await ws.untilDone(failed);
  const long = await post(chainPrompt({ seed: 2, steps: 100000 }));
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === long);
  const waiting = await post(chainPrompt({ seed: 3 }));

  const active = (await api(s.url, 'GET', '/api/jobs?status=in_progress,pending&limit=200&offset=0')).json;
  assert.deepEqual(
    active.jobs.map((j: any) => [j.id, j.status]),
    [
      [waiting, 'pending'],
      [long, 'in_progress'],
    ],
    'newest first',
  );
  assert.deepEqual(active.pagination, { offset: 0, limit: 200, total: 2, has_more: false });
  for (const j of active.jobs) {
    assert.ok(Math.abs(j.create_time - Date.now()) < 60_000, 'create_time in ms');
    assert.equal(typeof j.priority, 'number');
    assert.equal(j.workflow_id, 'wf-1');
  }
  const pendingDetail = (await api(s.url, 'GET', `/api/jobs/${waiting}`)).json;
  assert.equal(pendingDetail.status, 'pending');
  assert.deepEqual(pendingDetail.workflow.extra_data.extra_pnginfo.workflow, workflow);

  await api(s.url, 'POST', '/interrupt', { prompt_id: long });
  await ws.untilDone(long);
  await ws.untilDone(waiting);
  const finished = (await api(s.url, 'GET', '/api/jobs?status=completed,failed,cancelled&limit=200&offset=0')).json;
  assert.deepEqual(
    finished.jobs.map((j: any) => [j.id, j.status]),
    [
      [waiting, 'completed'],
      [long, 'cancelled'],
      [failed, 'failed'],
      [done, 'completed'],
    ],
  );
  const byId = Object.fromEntries(finished.jobs.map((j: any) => [j.id, j]));
  const ok = byId[done];
  assert.ok(ok.execution_start_time >= ok.create_time && ok.execution_end_time >= ok.execution_start_time);
  assert.equal(ok.outputs_count, 1);
  const entry = await waitHistory(s.url, done);
  const image = entry.outputs['4'].images[0];
  assert.deepEqual(ok.preview_output, { ...image, nodeId: '4', mediaType: 'images' });
  assert.equal(byId[failed].execution_error.exception_message, 'stub failure on purpose');
  assert.equal(byId[failed].execution_error.node_id, '2');
  assert.equal(byId[failed].execution_error.node_type, 'StubThrow');
  assert.equal(byId[done].execution_error, null);
  // pagination: newest first, two per page
  const p1 = (await api(s.url, 'GET', '/api/jobs?limit=2&offset=0')).json;
  const p2 = (await api(s.url, 'GET', '/api/jobs?limit=2&offset=2')).json;
  assert.deepEqual(
    [...p1.jobs, ...p2.jobs].map((j: any) => j.id),
    [waiting, long, failed, done],
  );
  assert.deepEqual(p1.pagination, { offset: 0, limit: 2, total: 4, has_more: true });
  assert.deepEqual(p2.pagination, { offset: 2, limit: 2, total: 4, has_more: false });
  const asc = (await api(s.url, 'GET', '/api/jobs?status=completed&sort_order=asc')).json;
  assert.deepEqual(
    asc.jobs.map((j: any) => j.id),
    [done, waiting],
  );
  const detail = (await api(s.url, 'GET', `/api/jobs/${done}`)).json;
  assert.deepEqual(detail.outputs, entry.outputs);
  assert.deepEqual(detail.workflow.extra_data.extra_pnginfo.workflow, workflow);
  assert.deepEqual(detail.workflow.prompt, chainPrompt({ seed: 1 }));
  // bad input: same 4xx shapes as the rest
  for (const q of ['status=done', 'limit=0', 'limit=-1', 'offset=x', 'sort_order=up']) {
    const r = await api(s.url, 'GET', `/api/jobs?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.json.error.type, 'bad_request');
  }
  const missing = await api(s.url, 'GET', '/api/jobs/no-such-job');
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.type, 'not_found');
  ws.close();
});

test('model library: folders, files with pathIndex/size/modified, folder_paths; links inside models/ and extra_model_paths.yaml count', async () => {
  const root = (await start({ execute: false })).root;
  const elsewhere = join(root, 'other-drive');
  mkdirSync(join(elsewhere, 'sd'), { recursive: true });
  mkdirSync(join(elsewhere, 'lora-pack'), { recursive: true });
  writeFileSync(join(elsewhere, 'sd', 'big.safetensors'), 'x'.repeat(10));
  writeFileSync(join(elsewhere, 'lora-pack', 'style.safetensors'), 'y');
  writeFileSync(join(elsewhere, 'extra.ckpt'), 'zz');
  const models = join(root, 'models');
  mkdirSync(join(models, 'checkpoints'), { recursive: true });
  mkdirSync(join(models, 'loras'), { recursive: true });
  writeFileSync(join(models, 'checkpoints', 'local.safetensors'), 'abc');
  symlinkSync(join(elsewhere, 'sd', 'big.safetensors'), join(models, 'checkpoints', 'linked.safetensors'));
  symlinkSync(join(elsewhere, 'lora-pack'), join(models, 'loras', 'pack'));
  symlinkSync(join(models, 'loras'), join(models, 'loras', 'loop')); // a link loop must not hang or repeat
  const yaml = `# as ComfyUI documents it
comfyui:
    base_path: ${elsewhere}
    is_default: true
    checkpoints: |
        sd
        .
    loras: lora-pack   # trailing comment
other:
    vae: ~/no-such-folder-tcd
`;
  writeFileSync(join(root, 'extra_model_paths.yaml'), yaml);
  const extra = parseExtraModelPaths(yaml, root);
  assert.deepEqual(extra.checkpoints, [join(elsewhere, 'sd'), elsewhere]);
  assert.deepEqual(extra.loras, [join(elsewhere, 'lora-pack')]);
  assert.match(extra.vae[0], /no-such-folder-tcd$/);
  await servers.pop()!.stop({ keep: true });
  const s = await start({ root, execute: false, extraModelPaths: extra });
  const folders = (await api(s.url, 'GET', '/api/experiment/models')).json;
  assert.deepEqual(folders.find((f: any) => f.name === 'checkpoints').folders, [
    join(models, 'checkpoints'),
    join(elsewhere, 'sd'),
    elsewhere,
  ]);
  const ckpts = (await api(s.url, 'GET', '/api/experiment/models/checkpoints')).json;
  assert.deepEqual(
    ckpts.map((f: any) => [f.name, f.pathIndex, f.size]),
    [
      ['big.safetensors', 1, 10],
      ['extra.ckpt', 2, 2],
      ['linked.safetensors', 0, 10],
      ['local.safetensors', 0, 3],
      ['lora-pack/style.safetensors', 2, 1],
      ['sd/big.safetensors', 2, 10],
    ],
  );
  assert.ok(
    ckpts.every((f: any) => Math.abs(f.modified - Date.now()) < 600_000),
    'modified in ms',
  );
  assert.deepEqual((await api(s.url, 'GET', '/api/models/loras')).json, [
    'pack/style.safetensors',
    'style.safetensors',
  ]);
  assert.equal((await api(s.url, 'GET', '/api/experiment/models/nope')).status, 404);
  const fp = (await api(s.url, 'GET', '/internal/folder_paths')).json;
  // ComfyUI answers each folder's paths only (its frontend saves a downloaded model to paths[folder][0])
  assert.deepEqual(fp.loras, [join(models, 'loras'), join(elsewhere, 'lora-pack')]);
  assert.deepEqual(fp.checkpoints, [join(models, 'checkpoints'), join(elsewhere, 'sd'), elsewhere]);
  // names resolve through the link and in the extra folders; traversal is still refused
  const m = new ModelFolders(models, extra);
  assert.equal(readFileSync(m.resolve('checkpoints', 'linked.safetensors'), 'utf8'), 'x'.repeat(10));
  assert.equal(m.resolve('checkpoints', 'extra.ckpt'), join(elsewhere, 'extra.ckpt'));
  assert.equal(m.resolve('loras', 'pack/style.safetensors'), join(models, 'loras', 'pack', 'style.safetensors'));
  assert.throws(() => m.resolve('checkpoints', '../../other-drive/extra.ckpt'), /must not contain/);
  assert.throws(() => parseExtraModelPaths('comfyui:\n  checkpoints\n', root), /expected "key: value"/);
  // the library's preview images (beside the model, 404 when none) and safetensors metadata
  writeFileSync(join(models, 'checkpoints', 'local.preview.png'), 'PNGDATA');
  const pv = await api(s.url, 'GET', '/api/experiment/models/preview/checkpoints/0/local.webp');
  assert.deepEqual([pv.status, pv.headers.get('content-type'), pv.text], [200, 'image/png', 'PNGDATA']);
  const none = await api(s.url, 'GET', '/api/experiment/models/preview/checkpoints/0/linked.webp');
  assert.deepEqual([none.status, none.json.error.type], [404, 'not_found']);
  const header = Buffer.from(
    JSON.stringify({ __metadata__: { ss_network_dim: '8' }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }),
  );
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(join(models, 'loras', 'meta.safetensors'), Buffer.concat([len, header, Buffer.alloc(4)]));
  assert.deepEqual((await api(s.url, 'GET', '/api/view_metadata/loras?filename=meta.safetensors')).json, {
    ss_network_dim: '8',
  });
  assert.equal((await api(s.url, 'GET', '/api/view_metadata/loras?filename=..%2Fx.safetensors')).status, 400);
  assert.equal((await api(s.url, 'GET', '/api/view_metadata/loras?filename=nope.safetensors')).status, 404);
});

test('template browser routes: index, logo index, search options, workflow JSON, thumbnails, /workflow_templates', async () => {
  const s = await start({ execute: false });
  const wfDir = join(s.root, 'workflows');
  mkdirSync(wfDir, { recursive: true });
  const wf = {
    nodes: [
      { id: 1, type: 'Note', pos: [0, 0], size: [300, 100], widgets_values: ['Draws a cat.\nFast.'] },
      { id: 2, type: 'KSampler', pos: [400, 50], size: [300, 260] },
    ],
    links: [],
    version: 0.4,
  };
  writeFileSync(join(wfDir, 'cat-txt2img.json'), JSON.stringify(wf));
  writeFileSync(join(wfDir, 'README.md'), 'not a workflow');
  const idx = await api(s.url, 'GET', '/templates/index.json');
  assert.match(idx.headers.get('content-type')!, /application\/json/);
  assert.deepEqual(idx.json, [
    {
      moduleName: 'default',
      title: 'tcd-studio',
      category: 'tcd-studio',
      type: 'image',
      templates: [
        {
          name: 'cat-txt2img',
          title: 'cat txt2img',
          description: 'Draws a cat. Fast.',
          mediaType: 'image',
          mediaSubtype: 'png',
          tags: ['TCD'],
        },
      ],
    },
  ]);
  assert.deepEqual((await api(s.url, 'GET', '/templates/index.fr.json')).json, idx.json);
  assert.deepEqual((await api(s.url, 'GET', '/templates/index_logo.json')).json, {});
  assert.ok(Array.isArray((await api(s.url, 'GET', '/templates/fuse_options.json')).json.keys));
  assert.deepEqual((await api(s.url, 'GET', '/templates/cat-txt2img.json')).json, wf);
  const thumb = await api(s.url, 'GET', '/templates/cat-txt2img-1.png');
  assert.equal(thumb.headers.get('content-type'), 'image/png');
  const img = decodePng(thumb.bytes);
  assert.deepEqual([img.width, img.height], [256, 192]);
  assert.ok(new Set(Array.from(img.rgba.filter((_, i) => i % 4 === 2))).size >= 3, 'node boxes are drawn');
  assert.deepEqual((await api(s.url, 'GET', '/api/workflow_templates')).json, { 'tcd-studio': ['cat-txt2img'] });
  assert.deepEqual((await api(s.url, 'GET', '/api/workflow_templates/tcd-studio/cat-txt2img.json')).json, wf);
  assert.equal(
    (await api(s.url, 'GET', '/api/workflow_templates/tcd-studio/cat-txt2img.jpg')).headers.get('content-type'),
    'image/png',
  );
  for (const p of [
    '/templates/nope.json',
    '/templates/..%2Fsecret.json',
    '/api/workflow_templates/other/cat-txt2img.json',
    '/templates/README.md',
  ]) {
    const r = await api(s.url, 'GET', p);
    assert.equal(r.status, 404, p);
    assert.equal(r.text, '404: Not Found');
  }
  await sleep(0);
});
