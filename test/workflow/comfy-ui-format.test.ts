/**
 * Issue 15 point 4: UI workflows as ComfyUI's frontend saves them convert like its frontend converts them: a seed's
 * control_after_generate companion is skipped whatever its saved value (ComfyUI's default graph and examples save
 * `true`), and legacy group nodes (`workflow/NAME`, `workflow>NAME`, defined in extra.groupNodes) are expanded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../nodes/index.js';
import {
  schemaFromDefinition,
  uiToApi,
  WorkflowConversionError,
  type UiWorkflow,
} from '../../server/workflow/convert.js';
import { uiWorkflowToPrompt } from '../../protocol/workflow/ui-to-api.js';

const registry = createRegistry();

/** ComfyUI's default graph as its frontend 1.45 saves it (ids, slots and widget values as there). */
function comfyDefault(ksamplerValues: unknown[]): UiWorkflow {
  return {
    last_node_id: 9,
    last_link_id: 9,
    nodes: [
      {
        id: 7,
        type: 'CLIPTextEncode',
        order: 3,
        mode: 0,
        inputs: [{ name: 'clip', type: 'CLIP', link: 5 }],
        outputs: [{ name: 'CONDITIONING', type: 'CONDITIONING', links: [6], slot_index: 0 }],
        widgets_values: ['text, watermark'],
      },
      {
        id: 6,
        type: 'CLIPTextEncode',
        order: 2,
        mode: 0,
        inputs: [{ name: 'clip', type: 'CLIP', link: 3 }],
        outputs: [{ name: 'CONDITIONING', type: 'CONDITIONING', links: [4], slot_index: 0 }],
        widgets_values: ['beautiful scenery nature glass bottle landscape, , purple galaxy bottle,'],
      },
      {
        id: 5,
        type: 'EmptyLatentImage',
        order: 1,
        mode: 0,
        outputs: [{ name: 'LATENT', type: 'LATENT', links: [2], slot_index: 0 }],
        widgets_values: [512, 512, 1],
      },
      {
        id: 3,
        type: 'KSampler',
        order: 4,
        mode: 0,
        inputs: [
          { name: 'model', type: 'MODEL', link: 1 },
          { name: 'positive', type: 'CONDITIONING', link: 4 },
          { name: 'negative', type: 'CONDITIONING', link: 6 },
          { name: 'latent_image', type: 'LATENT', link: 2 },
        ],
        outputs: [{ name: 'LATENT', type: 'LATENT', links: [7], slot_index: 0 }],
        widgets_values: ksamplerValues,
      },
      {
        id: 8,
        type: 'VAEDecode',
        order: 5,
        mode: 0,
        inputs: [
          { name: 'samples', type: 'LATENT', link: 7 },
          { name: 'vae', type: 'VAE', link: 8 },
        ],
        outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [9], slot_index: 0 }],
      },
      {
        id: 9,
        type: 'SaveImage',
        order: 6,
        mode: 0,
        inputs: [{ name: 'images', type: 'IMAGE', link: 9 }],
        widgets_values: ['ComfyUI'],
      },
      {
        id: 4,
        type: 'CheckpointLoaderSimple',
        order: 0,
        mode: 0,
        outputs: [
          { name: 'MODEL', type: 'MODEL', links: [1], slot_index: 0 },
          { name: 'CLIP', type: 'CLIP', links: [3, 5], slot_index: 1 },
          { name: 'VAE', type: 'VAE', links: [8], slot_index: 2 },
        ],
        widgets_values: ['v1-5-pruned-emaonly-fp16.safetensors'],
      },
    ],
    links: [
      [1, 4, 0, 3, 0, 'MODEL'],
      [2, 5, 0, 3, 3, 'LATENT'],
      [3, 4, 1, 6, 0, 'CLIP'],
      [4, 6, 0, 3, 1, 'CONDITIONING'],
      [5, 4, 1, 7, 0, 'CLIP'],
      [6, 7, 0, 3, 2, 'CONDITIONING'],
      [7, 3, 0, 8, 0, 'LATENT'],
      [8, 4, 2, 8, 1, 'VAE'],
      [9, 8, 0, 9, 0, 'IMAGE'],
    ],
    groups: [],
    config: {},
    extra: {},
    version: 0.4,
  };
}

const KSAMPLER = (seed: number) => ({
  seed,
  steps: 20,
  cfg: 8,
  sampler_name: 'euler',
  scheduler: 'normal',
  denoise: 1,
  model: ['4', 0],
  positive: ['6', 0],
  negative: ['7', 0],
  latent_image: ['5', 0],
});

test("a seed's control_after_generate companion is skipped whatever its saved value", () => {
  for (const companion of [true, false, 'randomize', 'fixed', null, 0, 'anything']) {
    const p = uiToApi(comfyDefault([156680208700286, companion, 20, 8, 'euler', 'normal', 1]), registry);
    assert.deepEqual(p['3'].inputs, KSAMPLER(156680208700286), `companion ${JSON.stringify(companion)}`);
  }
  // saved without the companion (hand-written or from other tools): still read by position
  assert.deepEqual(uiToApi(comfyDefault([5, 20, 8, 'euler', 'normal', 1]), registry)['3'].inputs, KSAMPLER(5));
  const p = uiToApi(comfyDefault([1, true, 20, 8, 'euler', 'normal', 1]), registry);
  assert.deepEqual(Object.keys(p).sort(), ['3', '4', '5', '6', '7', '8', '9']);
  assert.deepEqual(p['9'].inputs, { images: ['8', 0], filename_prefix: 'ComfyUI' });
});

/**
 * ComfyUI's default graph with KSampler + VAEDecode turned into a group node "Sample and decode" (as its legacy
 * "Convert to Group Node" stores it): instance 10 takes model, positive, negative, latent_image, vae as input slots
 * 0-4 and gives the decoded IMAGE as its only output (the LATENT is used inside).
 */
function grouped(type: string, widgets: unknown[]): UiWorkflow {
  const wf = comfyDefault([]);
  wf.nodes = wf.nodes.filter((n) => n.id !== 3 && n.id !== 8);
  wf.nodes.push({
    id: 10,
    type,
    order: 4,
    mode: 0,
    inputs: [
      { name: 'model', type: 'MODEL', link: 1 },
      { name: 'positive', type: 'CONDITIONING', link: 4 },
      { name: 'negative', type: 'CONDITIONING', link: 6 },
      { name: 'latent_image', type: 'LATENT', link: 2 },
      { name: 'vae', type: 'VAE', link: 8 },
    ],
    outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [9], slot_index: 0 }],
    widgets_values: widgets,
  });
  wf.links = [
    [1, 4, 0, 10, 0, 'MODEL'],
    [2, 5, 0, 10, 3, 'LATENT'],
    [3, 4, 1, 6, 0, 'CLIP'],
    [4, 6, 0, 10, 1, 'CONDITIONING'],
    [5, 4, 1, 7, 0, 'CLIP'],
    [6, 7, 0, 10, 2, 'CONDITIONING'],
    [8, 4, 2, 10, 4, 'VAE'],
    [9, 10, 0, 9, 0, 'IMAGE'],
  ];
  wf.extra = {
    groupNodes: {
      'Sample and decode': {
        nodes: [
          {
            id: -1,
            index: 0,
            type: 'KSampler',
            pos: [0, 0],
            size: [315, 262],
            mode: 0,
            order: 0,
            inputs: [
              { name: 'model', type: 'MODEL', link: null },
              { name: 'positive', type: 'CONDITIONING', link: null },
              { name: 'negative', type: 'CONDITIONING', link: null },
              { name: 'latent_image', type: 'LATENT', link: null },
            ],
            outputs: [{ name: 'LATENT', type: 'LATENT', links: [], slot_index: 0 }],
            widgets_values: [0, 'randomize', 20, 8, 'euler', 'normal', 1],
          },
          {
            id: -1,
            index: 1,
            type: 'VAEDecode',
            pos: [400, 0],
            size: [210, 46],
            mode: 0,
            order: 1,
            inputs: [
              { name: 'samples', type: 'LATENT', link: null },
              { name: 'vae', type: 'VAE', link: null },
            ],
            outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [], slot_index: 0 }],
          },
        ],
        links: [[0, 0, 1, 0, 3, 'LATENT']],
        external: [[1, 0, 'IMAGE']],
      },
    },
  };
  return wf;
}

test("group nodes (workflow/NAME and workflow>NAME) expand into their inner nodes with ComfyUI's ids", () => {
  for (const type of ['workflow/Sample and decode', 'workflow>Sample and decode']) {
    const wf = grouped(type, [42, 'fixed', 6, 2.5, 'dpmpp_2m', 'karras', 0.75]);
    const before = JSON.stringify(wf);
    const p = uiToApi(wf, registry);
    assert.equal(JSON.stringify(wf), before, 'the workflow is not changed');
    assert.deepEqual(Object.keys(p).sort(), ['10:0', '10:1', '4', '5', '6', '7', '9']);
    assert.deepEqual(p['10:0'], {
      class_type: 'KSampler',
      inputs: {
        seed: 42,
        steps: 6,
        cfg: 2.5,
        sampler_name: 'dpmpp_2m',
        scheduler: 'karras',
        denoise: 0.75,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
      _meta: { title: 'KSampler' },
    });
    assert.deepEqual(p['10:1'].inputs, { samples: ['10:0', 0], vae: ['4', 2] });
    assert.deepEqual(p['9'].inputs, { images: ['10:1', 0], filename_prefix: 'ComfyUI' });
  }
  // the companion after the group's seed is skipped whatever it holds (old saves: true)
  assert.equal(
    uiToApi(grouped('workflow>Sample and decode', [7, true, 6, 2.5, 'euler', 'normal', 1]), registry)['10:0'].inputs
      .steps,
    6,
  );
  // a muted group mutes its nodes: the saver loses its input
  const muted = grouped('workflow>Sample and decode', [7, true, 6, 2.5, 'euler', 'normal', 1]);
  muted.nodes.find((n) => n.id === 10)!.mode = 2;
  const mp = uiToApi(muted, registry);
  assert.equal(mp['10:0'], undefined);
  assert.deepEqual(mp['9'].inputs, { filename_prefix: 'ComfyUI' });
  // an instance whose definition is missing is refused by name
  const orphan = grouped('workflow>Nope', []);
  assert.throws(
    () => uiToApi(orphan, registry),
    (e) => e instanceof WorkflowConversionError && /workflow>Nope.*extra\.groupNodes/.test(e.message),
  );
});

test('a damaged group-node definition converts or is refused naming the group node, never a TypeError', () => {
  // before: "Cannot read properties of null (reading 'widget')" and the like, as the 400's whole message
  const damages: [string, (def: any) => void][] = [
    ['a null inner node', (d) => (d.nodes[1] = null)],
    ['an inner node without type', (d) => delete d.nodes[0].type],
    ['links not a list', (d) => (d.links = 5)],
    ['a link not a list', (d) => (d.links[0] = null)],
    ['external not a list', (d) => (d.external = { a: 1 })],
    ['an external entry not a list', (d) => (d.external[0] = 7)],
    ['inner inputs not a list', (d) => (d.nodes[1].inputs = 'x')],
    ['a null inner input', (d) => (d.nodes[0].inputs[1] = null)],
    ['inner outputs not a list', (d) => (d.nodes[0].outputs = 3)],
  ];
  for (const [what, damage] of damages) {
    const wf = grouped('workflow>Sample and decode', [42, 'fixed', 6, 2.5, 'dpmpp_2m', 'karras', 0.75]);
    damage((wf.extra as any).groupNodes['Sample and decode']);
    for (const strict of [true, false]) {
      try {
        const p = strict
          ? uiToApi(wf, registry)
          : uiWorkflowToPrompt(wf, (t) => registry.get(t) && schemaFromDefinition(registry.get(t)!), { strict });
        assert.equal(typeof p, 'object', what);
      } catch (e) {
        assert.ok(e instanceof WorkflowConversionError, `${what} (strict ${strict}): ${(e as Error).stack}`);
        assert.match(e.message, /group node workflow>Sample and decode \(node id 10\)/, what);
      }
    }
  }
  // the damages that leave the definition readable keep what they can: a null input slot is just unlinked
  const wf = grouped('workflow>Sample and decode', [42, 'fixed', 6, 2.5, 'dpmpp_2m', 'karras', 0.75]);
  (wf.extra as any).groupNodes['Sample and decode'].nodes[0].inputs[1] = null;
  const p = uiToApi(wf, registry);
  assert.deepEqual(p['10:0'].inputs.model, ['4', 0]);
  assert.equal(p['10:0'].inputs.seed, 42);
});
