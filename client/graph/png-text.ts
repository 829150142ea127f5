// Reads PNG text chunks (tEXt, and uncompressed iTXt) so a dropped image gives its workflow back.
// Works on plain bytes: usable in the browser and in node.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * All text chunks of a PNG, keyword -> text. Throws if the bytes are not a PNG.
 * @example JSON.parse(readPngText(new Uint8Array(await file.arrayBuffer())).workflow)
 */
export function readPngText(bytes: Uint8Array): Record<string, string> {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error('not a PNG file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, string> = {};
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8');
  let pos = 8;
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (type === 'tEXt') {
      const nul = data.indexOf(0);
      if (nul > 0) out[latin1.decode(data.subarray(0, nul))] = latin1.decode(data.subarray(nul + 1));
    } else if (type === 'iTXt') {
      // keyword\0 compressionFlag compressionMethod languageTag\0 translatedKeyword\0 text
      const nul = data.indexOf(0);
      if (nul > 0 && data[nul + 1] === 0) {
        const lang = data.indexOf(0, nul + 3);
        const translated = lang >= 0 ? data.indexOf(0, lang + 1) : -1;
        if (translated >= 0) out[latin1.decode(data.subarray(0, nul))] = utf8.decode(data.subarray(translated + 1));
      }
    } else if (type === 'IEND') break;
    pos += 12 + length; // length + type + data + crc
  }
  return out;
}

/**
 * The UI workflow embedded by SaveImage, or null when the PNG carries none.
 * @example const wf = workflowFromPng(bytes); if (wf) editor.load(wf);
 */
export function workflowFromPng(bytes: Uint8Array): unknown | null {
  const text = readPngText(bytes);
  if (!text.workflow) return null;
  return JSON.parse(text.workflow);
}
