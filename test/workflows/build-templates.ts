/**
 * Writes the ready workflows in workflows/ (UI format, litegraph 0.4) from short descriptions, so their links,
 * slot indices and widgets_values stay consistent with the node definitions. Run after changing a template:
 *   npx tsx test/workflows/build-templates.ts
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRegistry } from '../../nodes/index.js';
import { isWidgetType } from '../../server/executor/node-definition.js';

const registry = createRegistry();
const WORKFLOWS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'workflows');

interface Spec { id: number; type: string; title?: string; pos: [number, number]; widgets: unknown[]; from?: Record<string, [number, number]> }

/** Builds one UI-format workflow: sockets and their types come from the registry, links from `from`. */
export function buildWorkflow(specs: Spec[]) {
  const links: [number, number, number, number, number, string][] = [];
  const nodes = specs.map((s, order) => {
    const def = registry.get(s.type);
    if (!def) throw new Error(`unknown node ${s.type}`);
    const sockets = def.inputs.filter((i) => !isWidgetType(i.type) || i.options.forceInput);
    return {
      id: s.id, type: s.type, pos: s.pos, size: [315, s.type === 'CLIPTextEncode' ? 160 : 60 + 26 * (sockets.length + s.widgets.length)],
      flags: {}, order, mode: 0,
      inputs: sockets.map((i) => ({ name: i.name, type: i.type, link: null as number | null })),
      outputs: def.outputs.map((o, slot) => ({ name: o.name, type: o.type, links: [] as number[], slot_index: slot })),
      properties: { 'Node name for S&R': s.type },
      widgets_values: s.widgets,
      ...(s.title ? { title: s.title } : {}),
    };
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const s of specs) for (const [input, [origin, slot]] of Object.entries(s.from ?? {})) {
    const target = byId.get(s.id)!, src = byId.get(origin)!;
    const ti = target.inputs.findIndex((i) => i.name === input);
    if (ti < 0) throw new Error(`${s.type} has no socket ${input}`);
    const id = links.length + 1;
    links.push([id, origin, slot, s.id, ti, src.outputs[slot].type]);
    target.inputs[ti].link = id;
    src.outputs[slot].links.push(id);
  }
  return {
    last_node_id: Math.max(...nodes.map((n) => n.id)), last_link_id: links.length,
    nodes, links, groups: [], config: {}, extra: { ds: { scale: 1, offset: [0, 0] } }, version: 0.4,
  };
}

const NEGATIVE = 'blurry, low quality, watermark';

/** checkpoint -> [loras] -> prompts -> latent -> TCDSampler -> decode -> save */
function tcdTxt2img(o: { ckpt: string; loras: { name: string; strength: number; clip?: number; title?: string }[]; size: number; prompt: string; prefix: string; ckptTitle?: string }) {
  const specs: Spec[] = [{ id: 1, type: 'CheckpointLoaderSimple', pos: [40, 200], widgets: [o.ckpt], ...(o.ckptTitle ? { title: o.ckptTitle } : {}) }];
  let model: [number, number] = [1, 0], clip: [number, number] = [1, 1];
  o.loras.forEach((l, i) => {
    const id = 10 + i;
    if (l.clip === undefined) {
      specs.push({ id, type: 'LoraLoaderModelOnly', title: l.title, pos: [400 + 340 * i, 80], widgets: [l.name, l.strength], from: { model } });
      model = [id, 0];
    } else {
      specs.push({ id, type: 'LoraLoader', title: l.title, pos: [400 + 340 * i, 80], widgets: [l.name, l.strength, l.clip], from: { model, clip } });
      model = [id, 0]; clip = [id, 1];
    }
  });
  const x = 420 + 340 * o.loras.length;
  specs.push(
    { id: 2, type: 'CLIPTextEncode', title: 'Positive', pos: [x, 200], widgets: [o.prompt], from: { clip } },
    { id: 3, type: 'CLIPTextEncode', title: 'Negative (ignored at cfg 1)', pos: [x, 420], widgets: [NEGATIVE], from: { clip } },
    { id: 4, type: 'EmptyLatentImage', pos: [x, 640], widgets: [o.size, o.size, 1] },
    { id: 5, type: 'TCDSampler', pos: [x + 380, 200], widgets: [42, 'fixed', 4, 1, 0.3, 1, 50], from: { model, positive: [2, 0], negative: [3, 0], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [x + 740, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [x + 980, 200], widgets: [o.prefix], from: { images: [6, 0] } },
  );
  return buildWorkflow(specs);
}

function img2img() {
  return buildWorkflow([
    { id: 1, type: 'CheckpointLoaderSimple', pos: [40, 200], widgets: ['sd_xl_base_1.0.safetensors'] },
    { id: 10, type: 'LoraLoaderModelOnly', title: 'TCD LoRA', pos: [400, 80], widgets: ['TCD-SDXL-LoRA.safetensors', 1], from: { model: [1, 0] } },
    { id: 8, type: 'LoadImage', pos: [40, 480], widgets: ['example.png', 'image'] },
    { id: 9, type: 'VAEEncode', pos: [400, 520], widgets: [], from: { pixels: [8, 0], vae: [1, 2] } },
    { id: 2, type: 'CLIPTextEncode', title: 'Positive', pos: [760, 200], widgets: ['the same scene as a watercolor painting, soft light'], from: { clip: [1, 1] } },
    { id: 3, type: 'CLIPTextEncode', title: 'Negative (ignored at cfg 1)', pos: [760, 420], widgets: [NEGATIVE], from: { clip: [1, 1] } },
    { id: 5, type: 'TCDSampler', pos: [1140, 200], widgets: [42, 'fixed', 4, 1, 0.3, 0.6, 50], from: { model: [10, 0], positive: [2, 0], negative: [3, 0], latent_image: [9, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1500, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1740, 200], widgets: ['tcd-img2img'], from: { images: [6, 0] } },
  ]);
}

const DEMO = 'tcd-studio-demo-sdxl.safetensors';

/** The shared front of the demo-model workflows: checkpoint, positive and negative prompts. */
function demoFront(prompt: string): Spec[] {
  return [
    { id: 1, type: 'CheckpointLoaderSimple', title: 'Demo model (replace with your checkpoint)', pos: [40, 200], widgets: [DEMO] },
    { id: 2, type: 'CLIPTextEncode', title: 'Positive', pos: [400, 120], widgets: [prompt], from: { clip: [1, 1] } },
    { id: 3, type: 'CLIPTextEncode', title: 'Negative', pos: [400, 360], widgets: [NEGATIVE], from: { clip: [1, 1] } },
  ];
}

/** txt2img at 512, latent upscale x1.5, a second KSampler pass at denoise 0.5 (ComfyUI's "hires fix") */
function hiresFix() {
  return buildWorkflow([
    ...demoFront('a cozy cabin in a snowy forest at night, warm windows'),
    { id: 4, type: 'EmptyLatentImage', pos: [400, 600], widgets: [512, 512, 1] },
    { id: 5, type: 'KSampler', title: 'First pass', pos: [780, 200], widgets: [42, 'fixed', 4, 1, 'tcd', 'simple', 1], from: { model: [1, 0], positive: [2, 0], negative: [3, 0], latent_image: [4, 0] } },
    { id: 8, type: 'LatentUpscaleBy', pos: [1140, 200], widgets: ['nearest-exact', 1.5], from: { samples: [5, 0] } },
    { id: 9, type: 'KSampler', title: 'Hires pass', pos: [1400, 200], widgets: [43, 'fixed', 4, 1, 'tcd', 'simple', 0.5], from: { model: [1, 0], positive: [2, 0], negative: [3, 0], latent_image: [8, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1760, 200], widgets: [], from: { samples: [9, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [2000, 200], widgets: ['hires-fix'], from: { images: [6, 0] } },
  ]);
}

/** LoadImage (its alpha is the mask) -> VAEEncodeForInpaint -> KSampler -> decode: repaints the transparent area */
function inpaint() {
  return buildWorkflow([
    ...demoFront('a vase of sunflowers on the table'),
    { id: 4, type: 'LoadImage', title: 'Image with a transparent area to repaint', pos: [40, 600], widgets: ['example.png', 'image'] },
    { id: 8, type: 'VAEEncodeForInpaint', pos: [400, 600], widgets: [6], from: { pixels: [4, 0], vae: [1, 2], mask: [4, 1] } },
    { id: 5, type: 'KSampler', pos: [780, 200], widgets: [42, 'fixed', 8, 1, 'tcd', 'simple', 1], from: { model: [1, 0], positive: [2, 0], negative: [3, 0], latent_image: [8, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1140, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1380, 200], widgets: ['inpaint'], from: { images: [6, 0] } },
  ]);
}

/**
 * LoadImage (alpha = mask) -> InpaintModelConditioning -> KSampler: the graph for inpainting checkpoints
 * (sd-v1-5-inpainting, SDXL inpainting), whose 9-channel UNet reads the masked image and the mask; the demo model
 * (4 channels) stands in and, as in ComfyUI, only uses the noise mask
 */
function inpaintModel() {
  return buildWorkflow([
    { id: 1, type: 'CheckpointLoaderSimple', title: 'Demo model (replace with an inpainting checkpoint, e.g. sd-v1-5-inpainting)', pos: [40, 200], widgets: [DEMO] },
    { id: 2, type: 'CLIPTextEncode', title: 'Positive', pos: [400, 120], widgets: ['a vase of sunflowers on the table'], from: { clip: [1, 1] } },
    { id: 3, type: 'CLIPTextEncode', title: 'Negative', pos: [400, 360], widgets: [NEGATIVE], from: { clip: [1, 1] } },
    { id: 4, type: 'LoadImage', title: 'Image with a transparent area to repaint', pos: [40, 600], widgets: ['example.png', 'image'] },
    { id: 8, type: 'InpaintModelConditioning', pos: [780, 500], widgets: [true], from: { positive: [2, 0], negative: [3, 0], vae: [1, 2], pixels: [4, 0], mask: [4, 1] } },
    { id: 5, type: 'KSampler', pos: [1140, 200], widgets: [42, 'fixed', 8, 1, 'tcd', 'simple', 1], from: { model: [1, 0], positive: [8, 0], negative: [8, 1], latent_image: [8, 2] } },
    { id: 6, type: 'VAEDecode', pos: [1500, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1740, 200], widgets: ['inpaint-model'], from: { images: [6, 0] } },
  ]);
}

/** LoadImage -> ImagePadForOutpaint (mask = the new border, feathered) -> VAEEncodeForInpaint -> KSampler -> decode */
function outpaint() {
  return buildWorkflow([
    ...demoFront('a wide mountain landscape, the valley continues to both sides'),
    { id: 4, type: 'LoadImage', pos: [40, 600], widgets: ['example.png', 'image'] },
    { id: 9, type: 'ImagePadForOutpaint', pos: [400, 600], widgets: [128, 0, 128, 0, 40], from: { image: [4, 0] } },
    { id: 8, type: 'VAEEncodeForInpaint', pos: [760, 600], widgets: [8], from: { pixels: [9, 0], vae: [1, 2], mask: [9, 1] } },
    { id: 5, type: 'KSampler', pos: [1120, 200], widgets: [42, 'fixed', 8, 1, 'tcd', 'simple', 1], from: { model: [1, 0], positive: [2, 0], negative: [3, 0], latent_image: [8, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1480, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1720, 200], widgets: ['outpaint'], from: { images: [6, 0] } },
  ]);
}

/** The ComfyUI-TCD custom node's graph: TCDModelSamplingDiscrete feeds SamplerCustom its model, sampler and sigmas */
function comfyuiTcd() {
  return buildWorkflow([
    ...demoFront('a photo of a red fox in the snow, detailed fur'),
    { id: 4, type: 'EmptyLatentImage', pos: [400, 600], widgets: [512, 512, 1] },
    { id: 8, type: 'TCDModelSamplingDiscrete', pos: [400, 0], widgets: [4, 'simple', 1, 0.3], from: { model: [1, 0] } },
    { id: 5, type: 'SamplerCustom', pos: [780, 200], widgets: [true, 42, 'fixed', 1], from: { model: [8, 0], positive: [2, 0], negative: [3, 0], sampler: [8, 1], sigmas: [8, 2], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1140, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1380, 200], widgets: ['comfyui-tcd'], from: { images: [6, 0] } },
  ]);
}

/** A background prompt plus one prompt per half (ConditioningSetAreaPercentage), combined into one KSampler */
function areaComposition() {
  return buildWorkflow([
    ...demoFront('a calm lake under a clear sky, landscape photo'),
    { id: 10, type: 'CLIPTextEncode', title: 'Left half', pos: [400, 600], widgets: ['a snowy mountain'], from: { clip: [1, 1] } },
    { id: 11, type: 'CLIPTextEncode', title: 'Right half', pos: [400, 840], widgets: ['a green forest'], from: { clip: [1, 1] } },
    { id: 12, type: 'ConditioningSetAreaPercentage', pos: [760, 600], widgets: [0.5, 1, 0, 0, 1], from: { conditioning: [10, 0] } },
    { id: 13, type: 'ConditioningSetAreaPercentage', pos: [760, 840], widgets: [0.5, 1, 0.5, 0, 1], from: { conditioning: [11, 0] } },
    { id: 14, type: 'ConditioningCombine', pos: [1120, 600], widgets: [], from: { conditioning_1: [12, 0], conditioning_2: [13, 0] } },
    { id: 15, type: 'ConditioningCombine', pos: [1120, 400], widgets: [], from: { conditioning_1: [2, 0], conditioning_2: [14, 0] } },
    { id: 4, type: 'EmptyLatentImage', pos: [1120, 840], widgets: [1024, 512, 1] },
    { id: 5, type: 'KSampler', pos: [1480, 200], widgets: [42, 'fixed', 8, 2, 'euler', 'normal', 1], from: { model: [1, 0], positive: [15, 0], negative: [3, 0], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1840, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [2080, 200], widgets: ['area-composition'], from: { images: [6, 0] } },
  ]);
}

/** Two checkpoints' UNets blended 50/50 (ModelMergeSimple); the demo model stands in for both */
function modelMerge() {
  return buildWorkflow([
    ...demoFront('a portrait of an old sailor, oil painting'),
    { id: 10, type: 'CheckpointLoaderSimple', title: 'Second model (replace with another checkpoint of the same family)', pos: [40, 500], widgets: [DEMO] },
    { id: 11, type: 'ModelMergeSimple', pos: [400, 0], widgets: [0.5], from: { model1: [1, 0], model2: [10, 0] } },
    { id: 4, type: 'EmptyLatentImage', pos: [400, 600], widgets: [512, 512, 1] },
    { id: 5, type: 'KSampler', pos: [780, 200], widgets: [42, 'fixed', 4, 1, 'tcd', 'simple', 1], from: { model: [11, 0], positive: [2, 0], negative: [3, 0], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1140, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1380, 200], widgets: ['model-merge'], from: { images: [6, 0] } },
  ]);
}

/** A hint image steers the layout through a ControlNet (ControlNetApplyAdvanced on both sides, 0..80% of the steps) */
function controlnet() {
  return buildWorkflow([
    ...demoFront('a stone bridge over a river, autumn trees'),
    { id: 10, type: 'ControlNetLoader', title: 'Demo ControlNet (replace with a ControlNet for your model)', pos: [40, 500], widgets: ['tcd-studio-demo-controlnet-sdxl.safetensors'] },
    { id: 11, type: 'LoadImage', title: 'Hint image (e.g. a canny edge map)', pos: [40, 700], widgets: ['example.png', 'image'] },
    { id: 12, type: 'ControlNetApplyAdvanced', pos: [760, 400], widgets: [0.8, 0, 0.8], from: { positive: [2, 0], negative: [3, 0], control_net: [10, 0], image: [11, 0], vae: [1, 2] } },
    { id: 4, type: 'EmptyLatentImage', pos: [760, 700], widgets: [512, 512, 1] },
    { id: 5, type: 'KSampler', pos: [1120, 200], widgets: [42, 'fixed', 8, 2, 'euler', 'normal', 1], from: { model: [1, 0], positive: [12, 0], negative: [12, 1], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1480, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 7, type: 'SaveImage', pos: [1720, 200], widgets: ['controlnet'], from: { images: [6, 0] } },
  ]);
}

/** txt2img, then the image through an ESRGAN-family upscale model (tiled, like ComfyUI's ImageUpscaleWithModel) */
function esrganUpscale() {
  return buildWorkflow([
    ...demoFront('a mountain village at dawn, detailed rooftops'),
    { id: 4, type: 'EmptyLatentImage', pos: [400, 600], widgets: [512, 512, 1] },
    { id: 5, type: 'KSampler', pos: [780, 200], widgets: [42, 'fixed', 4, 1, 'tcd', 'simple', 1], from: { model: [1, 0], positive: [2, 0], negative: [3, 0], latent_image: [4, 0] } },
    { id: 6, type: 'VAEDecode', pos: [1140, 200], widgets: [], from: { samples: [5, 0], vae: [1, 2] } },
    { id: 8, type: 'UpscaleModelLoader', title: 'Demo upscale model (replace with e.g. RealESRGAN_x4plus.safetensors)', pos: [1140, 420], widgets: ['tcd-studio-demo-esrgan-x2.safetensors'] },
    { id: 9, type: 'ImageUpscaleWithModel', pos: [1500, 200], widgets: [], from: { upscale_model: [8, 0], image: [6, 0] } },
    { id: 7, type: 'SaveImage', pos: [1860, 200], widgets: ['esrgan-upscale'], from: { images: [9, 0] } },
  ]);
}

export const TEMPLATES: Record<string, () => unknown> = {
  controlnet,
  'esrgan-upscale': esrganUpscale,
  'hires-fix': hiresFix,
  'model-merge': modelMerge,
  'area-composition': areaComposition,
  inpaint,
  'inpaint-model': inpaintModel,
  outpaint,
  'comfyui-tcd': comfyuiTcd,
  'tcd-sdxl-txt2img': () => tcdTxt2img({ ckpt: 'sd_xl_base_1.0.safetensors', loras: [{ name: 'TCD-SDXL-LoRA.safetensors', strength: 1, title: 'TCD LoRA' }], size: 1024, prompt: 'a photo of a lighthouse on a cliff at sunset, highly detailed', prefix: 'tcd-sdxl' }),
  'tcd-sd15-txt2img': () => tcdTxt2img({ ckpt: 'v1-5-pruned-emaonly.safetensors', loras: [{ name: 'TCD-SD15-LoRA.safetensors', strength: 1, title: 'TCD LoRA' }], size: 512, prompt: 'a photo of a cat sitting on a windowsill, soft light', prefix: 'tcd-sd15' }),
  'tcd-img2img': img2img,
  'tcd-lora-stack': () => tcdTxt2img({ ckpt: 'sd_xl_base_1.0.safetensors', loras: [
    { name: 'TCD-SDXL-LoRA.safetensors', strength: 1, title: 'TCD LoRA' },
    { name: 'style_lora_sdxl.safetensors', strength: 0.8, clip: 0.8, title: 'Style LoRA (replace with yours)' },
  ], size: 1024, prompt: 'a fox in a snowy forest, papercut style', prefix: 'tcd-lora-stack' }),
  demo: () => tcdTxt2img({ ckpt: 'tcd-studio-demo-sdxl.safetensors', loras: [], size: 512, prompt: 'a lighthouse on a cliff at sunset', prefix: 'tcd-demo', ckptTitle: 'Demo model (random weights: draws noise until you add a real checkpoint)' }),
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [name, build] of Object.entries(TEMPLATES)) writeFileSync(join(WORKFLOWS, `${name}.json`), JSON.stringify(build(), null, 2) + '\n');
  console.log(`wrote ${Object.keys(TEMPLATES).length} workflows to ${WORKFLOWS}`);
}
