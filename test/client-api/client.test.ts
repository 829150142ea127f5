/**
 * issue 7 point 3: the package's client (server/client-api) against a real server with an access token: queues UI
 * and API format, streams progress, awaits `executing {node:null}`, returns image bytes from /view with their
 * names; a rejected prompt throws with node_errors; a wrong token is refused; a websocket that drops mid-run
 * reconnects with `since=` and every logged event still arrives exactly once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from '../../server/host.js';
import { TcdClient, TcdApiError, type ServerMessage } from '../../server/client-api/index.js';
import { decodePng } from '../../server/storage/png.js';
import { PROJECT, tempDirs } from '../cli/run-cli.js';

const TOKEN = 'client-test-token';
let d: ReturnType<typeof tempDirs>;
let server: Awaited<ReturnType<typeof serve>>;
before(async () => {
  d = tempDirs('tcd-client-');
  server = await serve({
    port: 0,
    listen: '127.0.0.1',
    models: d.models,
    data: d.data,
    output: d.output,
    input: d.input,
    temp: d.temp,
    token: TOKEN,
    log: () => {},
  });
});
after(async () => {
  await server.close();
  rmSync(d.root, { recursive: true, force: true });
});

/** workflows/demo.json at a small size with a given seed and step count (widgets: seed, control, steps, ...). */
function demo(seed: number, steps = 4, size = 64) {
  const wf = JSON.parse(readFileSync(join(PROJECT, 'workflows', 'demo.json'), 'utf8'));
  for (const n of wf.nodes) {
    if (n.type === 'EmptyLatentImage') n.widgets_values = [size, size, 1];
    if (n.type === 'TCDSampler') {
      n.widgets_values[0] = seed;
      n.widgets_values[2] = steps;
    }
  }
  return wf;
}

test('run(): UI format, progress per step, images with bytes and names, events in protocol order', async () => {
  const client = new TcdClient({ url: server.url, token: TOKEN });
  try {
    const progress: number[] = [];
    const events: ServerMessage[] = [];
    const r = await client.run(demo(1), { onProgress: (p) => progress.push(p.value), onEvent: (m) => events.push(m) });
    assert.equal(r.status, 'success');
    assert.deepEqual(progress.slice(-4), [1, 2, 3, 4]);
    assert.equal(r.images.length, 1);
    const img = r.images[0];
    assert.equal(img.nodeId, '7');
    assert.equal(img.type, 'output');
    assert.match(img.filename, /^tcd-demo_\d{5}_\.png$/);
    assert.deepEqual(Buffer.from(img.bytes), readFileSync(join(d.output, img.filename)));
    const { width, height } = decodePng(img.bytes);
    assert.deepEqual([width, height], [64, 64]);
    // progress and progress_state (ComfyUI's per-step snapshots) are not logged for replay
    const logged = events.filter((e) => e.type !== 'progress' && e.type !== 'progress_state');
    const types = logged.map((e) => e.type);
    assert.equal(types[0], 'execution_start');
    assert.deepEqual(types.slice(-2), ['execution_success', 'executing']);
    assert.ok(
      logged.every((e) => typeof e.seq === 'number'),
      'logged events carry seq',
    );
  } finally {
    client.close();
  }
});

test('API format through queue() + wait(); convert() gives the same prompt the server runs', async () => {
  const client = new TcdClient({ url: server.url, token: TOKEN });
  try {
    const api = await client.convert(demo(2));
    assert.equal((api['5'] as { class_type: string }).class_type, 'TCDSampler');
    const { promptId } = await client.queue(api);
    const r = await client.wait(promptId);
    assert.equal(r.status, 'success');
    assert.equal(r.images.length, 1);
    assert.ok(r.images[0].bytes.length > 100);
  } finally {
    client.close();
  }
});

test('a rejected prompt throws TcdApiError with node_errors; a wrong token is refused on HTTP and websocket', async () => {
  const client = new TcdClient({ url: server.url, token: TOKEN });
  try {
    const bad = demo(3);
    bad.nodes.find((n: { type: string }) => n.type === 'TCDSampler').widgets_values[2] = 0; // steps below min
    await assert.rejects(client.run(bad), (e: unknown) => {
      assert.ok(e instanceof TcdApiError);
      assert.equal(e.status, 400);
      assert.equal(e.body.node_errors['5'].errors[0].type, 'value_smaller_than_min');
      assert.match(e.message, /node 5 TCDSampler/);
      return true;
    });
  } finally {
    client.close();
  }
  const wrong = new TcdClient({ url: server.url, token: 'nope' });
  await assert.rejects(wrong.connect(), /websocket refused: the server needs an access token/);
  await assert.rejects(wrong.request('GET', '/queue'), (e: unknown) => e instanceof TcdApiError && e.status === 401);
  wrong.close();
});

/** A TCP relay in front of the server that can cut every websocket passing through it. */
async function relay(target: number) {
  const ws = new Set<Socket>();
  const all = new Set<Socket>(); // every connection, so close() does not wait for idle keep-alive sockets
  let blocked = false;
  const srv = createServer((c) => {
    const up = connect(target, '127.0.0.1');
    all.add(c);
    c.on('close', () => all.delete(c));
    c.pipe(up);
    up.pipe(c);
    c.once('data', (chunk) => {
      if (!/upgrade: websocket/i.test(chunk.toString('latin1'))) return;
      if (blocked) {
        c.destroy();
        up.destroy();
        return;
      }
      ws.add(c);
      c.on('close', () => ws.delete(c));
    });
    const end = () => {
      c.destroy();
      up.destroy();
    };
    c.on('error', end);
    up.on('error', end);
    c.on('close', end);
    up.on('close', end);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
    cut: () => {
      const n = ws.size;
      for (const s of ws) s.destroy();
      return n;
    },
    block: (b: boolean) => {
      blocked = b;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of all) s.destroy();
        srv.close(() => r());
      }),
  };
}

test('the websocket drops mid-run and stays down until the prompt is done: the reconnect replays the rest, once', async () => {
  const r = await relay(server.port);
  const client = new TcdClient({ url: r.url, token: TOKEN, reconnectDelayMs: 50 });
  try {
    const events: ServerMessage[] = [];
    let cut = 0;
    // reconnection is refused until the server's history has the prompt: its end can only arrive by replay
    const unblockWhenDone = async (id: string) => {
      while (
        !(await (await fetch(`${server.url}/history/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json())[
          id
        ]
      )
        await new Promise((w) => setTimeout(w, 50));
      r.block(false);
    };
    const res = await client.run(demo(4, 8, 128), {
      onEvent: (m) => {
        events.push(m);
        // cut as soon as the prompt starts: every sampler step falls in the outage, however fast the steps run
        if (m.type === 'execution_start' && cut === 0) {
          r.block(true);
          cut = r.cut();
          void unblockWhenDone(m.data.prompt_id);
        }
      },
    });
    // progress is not logged, so steps sent while the socket was down never arrive: proof it really was down
    assert.equal(events.filter((e) => e.type === 'progress').length, 0, 'the socket was down for every step');
    assert.equal(cut, 1, 'one websocket was cut');
    assert.equal(client.stream.reconnects, 1);
    assert.equal(res.status, 'success');
    assert.equal(res.images.length, 1);
    const logged = events.filter((e) => typeof e.seq === 'number');
    const seqs = logged.map((e) => e.seq!);
    assert.deepEqual(
      seqs,
      [...new Set(seqs)].sort((a, b) => a - b),
      'each logged event once, in order',
    );
    const history = await client.history(res.promptId);
    const expected = (history.status.messages as [string][]).map((m) => m[0]);
    // every event the server logged for the prompt reached the client (history messages are the logged ones)
    for (const t of expected)
      assert.ok(
        logged.some((e) => e.type === t),
        `missing ${t}`,
      );
    assert.equal(logged.filter((e) => e.type === 'executed').length, 1);
    assert.equal(events.at(-1)!.type, 'executing');
  } finally {
    client.close();
    await r.close();
  }
});
