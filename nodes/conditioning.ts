/** Text conditioning: CLIPTextEncode and CLIPTextEncodeSDXL (separate CLIP-L / OpenCLIP-G prompts and size hints). */
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { Conditioning } from './types.js';

export const CLIPTextEncode = defineNode({
  id: 'CLIPTextEncode',
  displayName: 'CLIP Text Encode (Prompt)',
  category: 'conditioning',
  description:
    "Encodes a text prompt with the checkpoint's text encoders. Prompts longer than 75 tokens are split into windows, never truncated; (word:1.2) weights emphasis.",
  inputs: [
    t.string('text', { multiline: true, dynamicPrompts: true, tooltip: 'The text to be encoded.' }),
    t.socket('CLIP', 'clip', { tooltip: 'The CLIP model used for encoding the text.' }),
  ],
  outputs: [
    t.out(
      'CONDITIONING',
      'CONDITIONING',
      'A conditioning containing the embedded text used to guide the diffusion model.',
    ),
  ],
  execute: async ({ text, clip }, ctx) => {
    const { context, pooled } = await ctx.services.engine().encodeText(clip.ref, text);
    const cond: Conditioning = [{ context, pooled }];
    return { outputs: [cond] };
  },
});

/** [1, S, C]: channels [from, to) of `a`, padded on the sequence axis to `tokens` with `pad` ([1, 77, C]) windows. */
function channelSlice(a: Tensor, from: number, to: number, tokens: number, pad: Tensor): Float32Array {
  const [, s, c] = a.shape,
    w = to - from,
    out = new Float32Array(tokens * w);
  for (let i = 0; i < tokens; i++) {
    const src = i < s ? a : pad,
      row = i < s ? i : i % pad.shape[1];
    out.set(src.data.subarray(row * c + from, row * c + to), i * w);
  }
  return out;
}

const size = (name: string, def: number) => t.int(name, { default: def, min: 0, max: 16384, step: 8 });

export const CLIPTextEncodeSDXL = defineNode({
  id: 'CLIPTextEncodeSDXL',
  displayName: 'CLIPTextEncodeSDXL',
  category: 'advanced/conditioning',
  description:
    'SDXL conditioning with separate prompts for OpenCLIP-G (text_g) and CLIP-L (text_l) and explicit size/crop time ids.',
  inputs: [
    t.socket('CLIP', 'clip'),
    size('width', 1024),
    size('height', 1024),
    t.int('crop_w', { default: 0, min: 0, max: 16384 }),
    t.int('crop_h', { default: 0, min: 0, max: 16384 }),
    size('target_width', 1024),
    size('target_height', 1024),
    t.string('text_g', { multiline: true, dynamicPrompts: true }),
    t.string('text_l', { multiline: true, dynamicPrompts: true }),
  ],
  outputs: [t.out('CONDITIONING')],
  execute: async (a, ctx) => {
    const c = a.clip;
    const encoders = c.config.textEncoders;
    if (encoders.length < 2)
      throw new Error('CLIPTextEncodeSDXL needs an SDXL-family CLIP (two text encoders); use CLIPTextEncode for SD1');
    const engine = ctx.services.engine();
    const g = await engine.encodeText(c.ref, a.text_g);
    // the same text for both encoders is one encoding; otherwise splice CLIP-L's channels from text_l's encoding
    const l = a.text_l === a.text_g ? g : await engine.encodeText(c.ref, a.text_l);
    const wl = encoders[0].width,
      total = g.context.shape[2];
    const tokens = Math.max(g.context.shape[1], l.context.shape[1]);
    const empty =
      tokens > Math.min(g.context.shape[1], l.context.shape[1])
        ? (await engine.encodeText(c.ref, '')).context
        : g.context;
    const lPart = channelSlice(l.context, 0, wl, tokens, empty),
      gPart = channelSlice(g.context, wl, total, tokens, empty);
    const context = new Float32Array(tokens * total);
    for (let i = 0; i < tokens; i++) {
      context.set(lPart.subarray(i * wl, (i + 1) * wl), i * total);
      context.set(gPart.subarray(i * (total - wl), (i + 1) * (total - wl)), i * total + wl);
    }
    const cond: Conditioning = [
      {
        context: { shape: [1, tokens, total], data: context },
        pooled: g.pooled,
        width: a.width,
        height: a.height,
        cropW: a.crop_w,
        cropH: a.crop_h,
        targetWidth: a.target_width,
        targetHeight: a.target_height,
      },
    ];
    return { outputs: [cond] };
  },
});
