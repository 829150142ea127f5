// Image inputs (combos marked `image_upload` in object_info, e.g. LoadImage.image): an upload button on the node,
// the chosen image drawn on the node, and the shared upload step used by the button, drag-and-drop and paste.
// The actual HTTP upload is injected (`imageInputs.upload`), so this file knows nothing about the server.
import { LiteGraph, type LGraphNode } from '@comfyorg/litegraph';
import type { NodeInfo } from '../graph/types.js';
import { runtime } from './runtime-state.js';

export const UPLOAD_WIDGET = 'upload';

/** What the editor wires in once the API exists. */
export const imageInputs = {
  /** Uploads a file to the server's input folder; resolves to the stored name. */
  upload: null as ((file: File) => Promise<string>) | null,
  /** URL of an input image for <img> (carries the token when needed). */
  viewUrl: (name: string) => `api/view?type=input&filename=${encodeURIComponent(name)}`,
  /** After an upload: refresh the combo lists (the new file is listed). */
  afterUpload: async (_name: string) => {},
  /** Reports a failed upload to the user. */
  onError: (_message: string) => {},
};

/** Names of a node class's inputs that take an uploaded image. */
export function imageUploadInputs(info: NodeInfo): string[] {
  const specs = { ...(info.input.required ?? {}), ...(info.input.optional ?? {}) };
  return Object.entries(specs)
    .filter(([, s]) => s?.[1]?.image_upload === true)
    .map(([name]) => name);
}

let picker: HTMLInputElement | null = null;

/** Opens the browser's file dialog for `node` (the upload button's action). */
function pickFile(node: LGraphNode, input: string): void {
  picker?.remove();
  const el = document.createElement('input');
  el.type = 'file';
  el.accept = 'image/png,image/jpeg,image/webp,image/gif,image/bmp';
  el.style.display = 'none';
  el.dataset.testid = 'image-picker';
  el.onchange = () => {
    const f = el.files?.[0];
    el.remove();
    if (f) void uploadInto(node, input, f);
  };
  document.body.appendChild(el);
  picker = el;
  el.click();
}

/** Uploads `file` (lists refreshed afterwards); resolves to the stored name, or null after reporting the error. */
export async function uploadFile(file: File): Promise<string | null> {
  if (!imageInputs.upload) return null;
  try {
    const name = await imageInputs.upload(file);
    await imageInputs.afterUpload(name);
    return name;
  } catch (e) {
    imageInputs.onError(`upload of ${file.name} failed: ${(e as Error).message}`);
    return null;
  }
}

/** Makes `name` the value of `node`'s image input (listed in its combo even before the lists refresh). */
export function setImage(node: LGraphNode, input: string, name: string): void {
  const w = node.widgets?.find((x) => x.name === input);
  if (!w) return;
  const values = (w.options as { values?: unknown[] }).values;
  if (Array.isArray(values) && !values.includes(name)) values.push(name);
  w.value = name as never;
  w.callback?.(name as never);
  node.setDirtyCanvas(true, true);
}

/**
 * Uploads `file` and makes it the value of `node`'s image input.
 * @example await uploadInto(loadImageNode, 'image', droppedFile);
 */
export async function uploadInto(node: LGraphNode, input: string, file: File): Promise<boolean> {
  const name = await uploadFile(file);
  if (name) setImage(node, input, name);
  return name !== null;
}

/** The upload button after the image combo (serialised as ComfyUI does: the value "image"). */
export function addUploadWidget(node: LGraphNode, input: string): void {
  node.addWidget('button', 'choose file to upload', 'image', () => pickFile(node, input), {});
  const w = node.widgets![node.widgets!.length - 1];
  w.name = UPLOAD_WIDGET;
  (w as { label?: string }).label = 'choose file to upload';
}

/** Keeps the node's picture in step with its image combo (after a pick, a load, an undo). */
export function syncInputImage(node: LGraphNode, input: string): void {
  const id = String(node.id);
  const name = node.widgets?.find((w) => w.name === input)?.value;
  const url = typeof name === 'string' && name ? imageInputs.viewUrl(name) : null;
  const shown = runtime.images.get(id);
  if (!url) {
    if (shown) runtime.images.delete(id);
    return;
  }
  if (shown?.length === 1 && shown[0].dataset.src === url) return;
  // Workflows saved by other tools size LoadImage for its widgets only: make room for the picture.
  if (node.size[1] < IMAGE_NODE_MIN[1]) node.setSize([Math.max(node.size[0], IMAGE_NODE_MIN[0]), IMAGE_NODE_MIN[1]]);
  runtime.setImages(id, [url]);
  runtime.images.get(id)![0].dataset.src = url;
}

/** A LoadImage-like node class needs room below its widgets for the picture. */
export const IMAGE_NODE_MIN: [number, number] = [320, 120 + 8 * LiteGraph.NODE_WIDGET_HEIGHT];
