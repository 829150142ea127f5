/**
 * Binary websocket frames carrying preview images (ComfyUI's layout), encoded by the server and decoded by the
 * clients. Every number is a big-endian u32.
 *   type 1 (PREVIEW_IMAGE):               [1][image type: 1 jpeg, 2 png][image bytes]
 *   type 4 (PREVIEW_IMAGE_WITH_METADATA): [4][json length][json metadata][image bytes]
 * Type 4 goes to clients that announced `supports_preview_metadata`; its metadata names the node and prompt.
 * Browser-safe: Uint8Array and DataView only.
 * Example: decodePreviewFrame(encodePreviewFrame({ format: 'png', bytes })) // { mime: 'image/png', bytes }
 */

export const BINARY_PREVIEW_IMAGE = 1;
export const BINARY_PREVIEW_WITH_METADATA = 4;
const PREVIEW_JPEG = 1;
const PREVIEW_PNG = 2;

export interface PreviewImage {
  format: 'jpeg' | 'png';
  bytes: Uint8Array;
}

/** A decoded preview frame; the ids are there when the frame carried metadata (type 4). */
export interface PreviewFrame {
  mime: 'image/jpeg' | 'image/png';
  bytes: Uint8Array;
  promptId?: string;
  nodeId?: string;
}

function frame(kind: number, word: number, parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(8 + parts.reduce((n, p) => n + p.length, 0));
  const view = new DataView(out.buffer);
  view.setUint32(0, kind);
  view.setUint32(4, word);
  let at = 8;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const mimeOf = (format: PreviewImage['format']) => (format === 'jpeg' ? 'image/jpeg' : 'image/png');

/** Frame type 1: the image alone. */
export function encodePreviewFrame(img: PreviewImage): Uint8Array {
  return frame(BINARY_PREVIEW_IMAGE, img.format === 'jpeg' ? PREVIEW_JPEG : PREVIEW_PNG, [img.bytes]);
}

/** Frame type 4: the image with the node and prompt it belongs to. */
export function encodePreviewFrameWithMetadata(
  img: PreviewImage,
  meta: { node_id: string; prompt_id: string },
): Uint8Array {
  const json = new TextEncoder().encode(
    JSON.stringify({
      node_id: meta.node_id,
      prompt_id: meta.prompt_id,
      display_node_id: meta.node_id,
      parent_node_id: null,
      real_node_id: meta.node_id,
      image_type: mimeOf(img.format),
    }),
  );
  return frame(BINARY_PREVIEW_WITH_METADATA, json.length, [json, img.bytes]);
}

/** Decodes a binary frame; null for a frame type this protocol does not know or a malformed one. */
export function decodePreviewFrame(data: ArrayBuffer | Uint8Array): PreviewFrame | null {
  const buf = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (buf.length < 8) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const kind = view.getUint32(0);
  if (kind === BINARY_PREVIEW_IMAGE) {
    return { mime: view.getUint32(4) === PREVIEW_PNG ? 'image/png' : 'image/jpeg', bytes: buf.slice(8) };
  }
  if (kind !== BINARY_PREVIEW_WITH_METADATA) return null;
  const n = view.getUint32(4);
  try {
    const meta = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n)));
    return {
      mime: meta.image_type === 'image/png' ? 'image/png' : 'image/jpeg',
      bytes: buf.slice(8 + n),
      promptId: meta.prompt_id,
      nodeId: meta.node_id,
    };
  } catch {
    return null;
  }
}
