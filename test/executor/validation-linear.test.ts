/**
 * Issue 18 finding 4, as a property: over random graph shapes (chains, trees, fans, random DAGs, with failing nodes
 * and output nodes scattered anywhere), the work validation and UI conversion do grows linearly with the graph.
 * Work is counted, not timed: every read of the prompt (or workflow) objects goes through a counting Proxy, so the
 * count is exact and the same on any machine. At a size n and at 4n the work must stay under a fixed multiple of
 * nodes + links (the constants: the largest seen over many shapes, with headroom); the quadratic versions this
 * replaces exceed it by far at the larger size (each failing output or each input re-walked the graph).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validatePrompt, dependentOutputs } from '../../server/executor/validate.js';
import { uiToApi, type UiLink, type UiNode, type UiWorkflow } from '../../server/workflow/convert.js';
import { stubRegistry, type StubServices } from './stub-server.js';

const registry = stubRegistry();
const services: StubServices = {
  runs: new Map(),
  dirs: { output: '/nonexistent', input: '/nonexistent', temp: '/nonexistent' },
  slowDelayMs: 0,
};

/** Wraps `o` (deeply) so each property read, `in` test and own-key listing adds one to `counter.n`. */
function counted<T extends object>(o: T, counter: { n: number }): T {
  const cache = new WeakMap<object, object>();
  const wrap = (v: unknown): unknown => {
    if (!v || typeof v !== 'object') return v;
    let w = cache.get(v as object);
    if (!w) {
      w = new Proxy(v as object, {
        get: (t, k, r) => {
          counter.n++;
          return wrap(Reflect.get(t, k, r));
        },
        has: (t, k) => {
          counter.n++;
          return Reflect.has(t, k);
        },
        getOwnPropertyDescriptor: (t, k) => {
          counter.n++;
          return Reflect.getOwnPropertyDescriptor(t, k);
        },
        ownKeys: (t) => {
          counter.n++;
          return Reflect.ownKeys(t);
        },
      });
      cache.set(v as object, w);
    }
    return w;
  };
  return wrap(o) as T;
}

interface Shape {
  kind: 'chain' | 'tree' | 'fan' | 'dag';
  badRate: number;
  outputRate: number;
  badRoot: boolean;
  seed: number;
}

/** A small deterministic PRNG so the same shape builds the same graph at every size. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** `n` StubAdd nodes over one StubLoad, linked as `shape.kind` says, with StubSave outputs and failing inputs. */
function buildPrompt(shape: Shape, n: number): Record<string, { class_type: string; inputs: Record<string, unknown> }> {
  const r = rng(shape.seed);
  const p: Record<string, { class_type: string; inputs: Record<string, unknown> }> = {
    n0: { class_type: 'StubLoad', inputs: { value: shape.badRoot ? -5 : 1 } },
  };
  for (let i = 1; i < n; i++) {
    const parent =
      shape.kind === 'chain'
        ? i - 1
        : shape.kind === 'tree'
          ? (i - 1) >> 1
          : shape.kind === 'fan'
            ? 0
            : Math.floor(r() * i);
    p[`n${i}`] = { class_type: 'StubAdd', inputs: { a: [`n${parent}`, 0], b: r() < shape.badRate ? 'bad' : 1 } };
    if (r() < shape.outputRate || i === n - 1)
      p[`o${i}`] = { class_type: 'StubSave', inputs: { x: [`n${i}`, 0], filename_prefix: 'p' } };
  }
  return p;
}

const size = (p: Record<string, unknown>) => Object.keys(p).length;

const shapes = fc.record({
  kind: fc.constantFrom('chain', 'tree', 'fan', 'dag'),
  badRate: fc.constantFrom(0, 0.01, 0.2, 1),
  outputRate: fc.constantFrom(0.05, 0.5, 1),
  badRoot: fc.boolean(),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
}) as fc.Arbitrary<Shape>;

/** Links of a prompt (inputs that are [id, slot] pairs). */
const links = (p: Record<string, { inputs: Record<string, unknown> }>) =>
  Object.values(p).reduce((a, x) => a + Object.values(x.inputs).filter(Array.isArray).length, 0);

/** Work per unit of graph (nodes + links), at `n` and at `4n`: linear work keeps both under the same constant. */
function workPerUnit(work: (n: number) => { ops: number; units: number }, n: number): [number, number] {
  const small = work(n),
    big = work(4 * n);
  return [small.ops / small.units, big.ops / big.units];
}

test('validation work per node does not grow with the graph (random shapes, failing nodes and outputs anywhere)', () => {
  fc.assert(
    fc.property(shapes, (shape) => {
      const [small, big] = workPerUnit((n) => {
        const p = buildPrompt(shape, n);
        const counter = { n: 0 };
        validatePrompt(counted(p, counter), registry, services);
        return { ops: counter.n, units: size(p) + links(p) };
      }, 300);
      assert.ok(
        small <= 20 && big <= 20,
        `${JSON.stringify(shape)}: ${small.toFixed(1)} then ${big.toFixed(1)} reads per node or link`,
      );
    }),
    { numRuns: 25 },
  );
});

test('dependent outputs of failing nodes are found with a bounded number of link look-ups per node', () => {
  fc.assert(
    fc.property(shapes, (shape) => {
      const [small, big] = workPerUnit((n) => {
        const p = buildPrompt(shape, n);
        const outputs = Object.keys(p).filter((id) => id.startsWith('o'));
        let ops = 0;
        const sources = (id: string) => {
          const found = Object.values(p[id]?.inputs ?? {})
            .filter(Array.isArray)
            .map((l) => String((l as unknown[])[0]));
          ops += 1 + found.length;
          return found;
        };
        const deps = dependentOutputs(outputs, sources, 64);
        // every output depends on itself and on the root, whatever the shape
        assert.deepEqual(deps.get(outputs[0])?.[0], outputs[0]);
        assert.equal(deps.get('n0')?.length, Math.min(64, outputs.length));
        return { ops, units: size(p) + links(p) };
      }, 300);
      // each node's links are listed at most twice: once to order the graph, once to pass its outputs on
      assert.ok(
        small <= 2 && big <= 2,
        `${JSON.stringify(shape)}: ${small.toFixed(2)} then ${big.toFixed(2)} look-ups per node or link`,
      );
    }),
    { numRuns: 25 },
  );
});

/** UI workflow: a StubLoad, a chain of `n` Reroutes (every k-th also bypassed through a StubAdd), `n` consumers. */
function rerouteWorkflow(shape: Shape, n: number): UiWorkflow {
  const r = rng(shape.seed);
  const nodes: UiNode[] = [{ id: 1, type: 'StubLoad', inputs: [], outputs: [], widgets_values: [1] }];
  const links: UiLink[] = [];
  let prev = 1,
    link = 1;
  const relays: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = 100 + i;
    const bypassed = r() < 0.3;
    nodes.push(
      bypassed
        ? {
            id,
            type: 'StubAdd',
            mode: 4,
            inputs: [{ name: 'a', type: 'NUMBER', link }],
            outputs: [],
            widgets_values: [0],
          }
        : { id, type: 'Reroute', inputs: [{ name: '', type: '*', link }], outputs: [] },
    );
    links.push([link++, prev, 0, id, 0, 'NUMBER']);
    prev = id;
    relays.push(id);
  }
  for (let j = 0; j < n; j++) {
    const id = 1_000_000 + j;
    const from = shape.kind === 'chain' ? prev : relays[Math.floor(r() * relays.length)];
    nodes.push({
      id,
      type: 'StubAdd',
      inputs: [{ name: 'a', type: 'NUMBER', link }],
      outputs: [],
      widgets_values: [2],
    });
    links.push([link++, from, 0, id, 0, 'NUMBER']);
  }
  return { nodes, links };
}

test('UI conversion work per node does not grow with Reroute and bypass chains', () => {
  fc.assert(
    fc.property(shapes, (shape) => {
      const [small, big] = workPerUnit((n) => {
        const wf = rerouteWorkflow(shape, n);
        const counter = { n: 0 };
        const prompt = uiToApi(counted(wf, counter), registry);
        assert.deepEqual(prompt['1000000'].inputs.a, ['1', 0]);
        return { ops: counter.n, units: wf.nodes.length + wf.links.length };
      }, 200);
      assert.ok(
        small <= 24 && big <= 24,
        `${JSON.stringify(shape)}: ${small.toFixed(1)} then ${big.toFixed(1)} reads per node or link`,
      );
    }),
    { numRuns: 20 },
  );
});
