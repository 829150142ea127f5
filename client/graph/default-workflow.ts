// The graph a fresh editor opens with: TCD text-to-image on the demo checkpoint, runnable with one click.
import type { Workflow } from './types.js';

export const DEMO_CHECKPOINT = 'tcd-studio-demo-sdxl.safetensors';

const node = (
  id: number,
  type: string,
  pos: [number, number],
  size: [number, number],
  inputs: [string, string, number | null][],
  outputs: [string, string, number[]][],
  widgets_values: unknown[],
  order: number,
) => ({
  id,
  type,
  pos,
  size,
  flags: {},
  order,
  mode: 0,
  inputs: inputs.map(([name, type, link]) => ({ name, type, link })),
  outputs: outputs.map(([name, type, links], slot_index) => ({ name, type, links, slot_index })),
  properties: {},
  widgets_values,
});

/**
 * A fresh copy of the default workflow (UI format 0.4).
 * @example editor.load(defaultWorkflow())
 */
export function defaultWorkflow(): Workflow {
  return {
    last_node_id: 9,
    last_link_id: 9,
    nodes: [
      node(
        4,
        'CheckpointLoaderSimple',
        [20, 220],
        [315, 100],
        [],
        [
          ['MODEL', 'MODEL', [1]],
          ['CLIP', 'CLIP', [2, 3]],
          ['VAE', 'VAE', [8]],
        ],
        [DEMO_CHECKPOINT],
        0,
      ),
      node(
        6,
        'CLIPTextEncode',
        [370, 40],
        [400, 180],
        [['clip', 'CLIP', 2]],
        [['CONDITIONING', 'CONDITIONING', [4]]],
        ['a photograph of a red fox in a snowy forest, soft morning light, detailed'],
        1,
      ),
      node(
        7,
        'CLIPTextEncode',
        [370, 270],
        [400, 180],
        [['clip', 'CLIP', 3]],
        [['CONDITIONING', 'CONDITIONING', [5]]],
        ['blurry, low quality'],
        2,
      ),
      node(5, 'EmptyLatentImage', [420, 500], [315, 110], [], [['LATENT', 'LATENT', [6]]], [512, 512, 1], 3),
      node(
        3,
        'TCDSampler',
        [805, 40],
        [315, 290],
        [
          ['model', 'MODEL', 1],
          ['positive', 'CONDITIONING', 4],
          ['negative', 'CONDITIONING', 5],
          ['latent_image', 'LATENT', 6],
        ],
        [['LATENT', 'LATENT', [7]]],
        [42, 'randomize', 4, 1, 0.3, 1, 50],
        4,
      ),
      node(
        8,
        'VAEDecode',
        [1155, 40],
        [210, 50],
        [
          ['samples', 'LATENT', 7],
          ['vae', 'VAE', 8],
        ],
        [['IMAGE', 'IMAGE', [9]]],
        [],
        5,
      ),
      node(9, 'SaveImage', [1155, 130], [360, 400], [['images', 'IMAGE', 9]], [], ['tcd-studio'], 6),
    ],
    links: [
      [1, 4, 0, 3, 0, 'MODEL'],
      [2, 4, 1, 6, 0, 'CLIP'],
      [3, 4, 1, 7, 0, 'CLIP'],
      [4, 6, 0, 3, 1, 'CONDITIONING'],
      [5, 7, 0, 3, 2, 'CONDITIONING'],
      [6, 5, 0, 3, 3, 'LATENT'],
      [7, 3, 0, 8, 0, 'LATENT'],
      [8, 4, 2, 8, 1, 'VAE'],
      [9, 8, 0, 9, 0, 'IMAGE'],
    ],
    groups: [],
    config: {},
    // Readable (80%) and the whole graph fits the canvas next to the side panel on a 1500px-wide window.
    extra: { ds: { scale: 0.8, offset: [-8, 40] } },
    version: 0.4,
  };
}
