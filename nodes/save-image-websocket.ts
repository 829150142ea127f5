/**
 * SaveImageWebsocket (ComfyUI ships it in comfy_extras): instead of writing files, each image goes to the prompt's
 * client as a binary websocket frame [u32 1][u32 2 = PNG][PNG bytes], the frame ComfyUI sends for it. API clients
 * (e.g. @stable-canvas/comfyui-client's pipelines) read their results this way. It always runs: a result that only
 * lives on a socket cannot be served from the cache.
 */
import { randomUUID } from 'node:crypto';
import { defineNode, t } from './define.js';
import { encodePng } from '../server/storage/png.js';
import { imageToBytes } from './image.js';

export const SaveImageWebsocket = defineNode({
  id: 'SaveImageWebsocket',
  displayName: 'Save Image (Websocket)',
  category: 'api node/image',
  outputNode: true,
  description: 'Sends the images to the client that queued the prompt, as PNG websocket frames; nothing is written.',
  inputs: [t.socket('IMAGE', 'images', { tooltip: 'The images to send.' })],
  outputs: [],
  // a new key each run: ComfyUI's IS_CHANGED for this node is the time, so it never comes from the cache
  fingerprint: () => randomUUID(),
  execute: ({ images }, ctx) => {
    for (let b = 0; b < images.shape[0]; b++) {
      const { pixels, width, height, channels } = imageToBytes(images, b);
      ctx.preview({ format: 'png', bytes: encodePng(pixels, width, height, channels, {}, 1) });
      ctx.progress(b + 1, images.shape[0]);
    }
    return { outputs: [] };
  },
});
