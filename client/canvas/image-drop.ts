// Files dropped on the canvas and images pasted with Ctrl+V. A PNG that carries a workflow opens it; any other
// image goes into the image input of the node under the point, else of a selected node, else of a new LoadImage.
import type { LGraphNode } from '@comfyorg/litegraph';
import { workflowFromPng } from '../graph/png-text.js';
import type { Editor } from './editor.js';
import { imageInputs, imageUploadInputs, setImage, uploadFile, uploadInto } from './image-inputs.js';

/** The node under the point, else a selected one, that takes an image. */
function imageTarget(editor: Editor, at?: [number, number]): { node: LGraphNode; input: string } | null {
  const inputOf = (n: LGraphNode | null | undefined) => {
    const info = n ? editor.objectInfo[n.type ?? ''] : undefined;
    return info ? imageUploadInputs(info)[0] : undefined;
  };
  const pos = at ? editor.toGraph(at) : null;
  const under = pos ? editor.graph.getNodeOnPos(pos[0], pos[1]) : null;
  for (const n of [under, ...editor.selectedNodes()]) {
    const input = inputOf(n);
    if (n && input) return { node: n, input };
  }
  return null;
}

/**
 * Handles a file dropped at a client point (or pasted: no point). Returns an error message or null.
 * @example await dropFile(editor, file, [e.clientX, e.clientY]);
 */
export async function dropFile(editor: Editor, file: File, at?: [number, number]): Promise<string | null> {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  const png = head[0] === 0x89 && head[1] === 0x50;
  if (!png && !file.type.startsWith('image/')) return editor.loadFile(file);
  if (png && workflowFromPng(new Uint8Array(await file.arrayBuffer()))) return editor.loadFile(file);
  const target = imageTarget(editor, at);
  if (target) {
    if (await uploadInto(target.node, target.input, file)) editor.checkpoint();
    return null;
  }
  // Upload first, then add the node with its image: one undo step, never a node without its picture.
  const info = editor.objectInfo;
  const type = info.LoadImage ? 'LoadImage' : Object.keys(info).find((t) => imageUploadInputs(info[t]).length);
  if (!type) return `no node takes an image (${file.name})`;
  const name = await uploadFile(file);
  if (name) editor.addNode(type, at, (node) => setImage(node, imageUploadInputs(info[type])[0], name));
  return null;
}

/** Ctrl+V with an image on the clipboard (outside text fields): the image becomes an input. */
export function pasteImage(editor: Editor, e: ClipboardEvent): void {
  const t = e.target as HTMLElement | null;
  if (t && (t.localName === 'input' || t.localName === 'textarea' || t.isContentEditable)) return;
  const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (!file) return;
  e.preventDefault();
  void dropFile(editor, file).then((err) => {
    if (err) imageInputs.onError(err);
  });
}
