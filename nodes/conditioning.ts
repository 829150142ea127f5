/** Text conditioning: CLIPTextEncode. */
import { defineNode, t } from './define.js';
import type { ClipValue, Conditioning } from './types.js';

export const CLIPTextEncode = defineNode({
  id: 'CLIPTextEncode', displayName: 'CLIP Text Encode (Prompt)', category: 'conditioning',
  description: 'Encodes a text prompt with the checkpoint\'s text encoders. Prompts longer than 75 tokens are split into windows, never truncated; (word:1.2) weights emphasis.',
  inputs: [
    t.string('text', { multiline: true, dynamicPrompts: true, tooltip: 'The text to be encoded.' }),
    t.socket('CLIP', 'clip', { tooltip: 'The CLIP model used for encoding the text.' }),
  ],
  outputs: [t.out('CONDITIONING', 'CONDITIONING', 'A conditioning containing the embedded text used to guide the diffusion model.')],
  execute: async ({ text, clip }, ctx) => {
    const c = clip as ClipValue;
    const { context, pooled } = await ctx.services.engine().encodeText(c.ref, String(text));
    const cond: Conditioning = [{ context, pooled }];
    return { outputs: [cond] };
  },
});
