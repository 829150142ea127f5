/**
 * ComfyUI's "annotated" file names: `sub/name.png [output]` names a file of the output folder whatever folder the
 * request says. Its frontend writes them into image widgets (mask editor, webcam, clipspace) and asks /view with them.
 * Example: splitAnnotated('clipspace/a.png [input]') -> { name: 'clipspace/a.png', type: 'input' }
 */
export type FileFolderType = 'input' | 'output' | 'temp';

export function splitAnnotated(name: string): { name: string; type: FileFolderType | null } {
  const m = / ?\[(input|output|temp)\]$/.exec(name);
  return m ? { name: name.slice(0, m.index), type: m[1] as FileFolderType } : { name, type: null };
}
