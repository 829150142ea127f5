/**
 * How the server names an image it stored: in `executed` outputs, history entries and GET /view's query
 * (ComfyUI's shape). type is 'output', 'input' or 'temp'.
 * Example: { filename: 'tcd_00001_.png', subfolder: '', type: 'output' } -> GET /view?filename=tcd_00001_.png&subfolder=&type=output
 */
export interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}
