/**
 * The template browser of ComfyUI's frontend, filled from tcd-studio's workflows/ folder:
 *   GET /templates/index.json (and index.<locale>.json)  -> [{moduleName: 'default', title, type, templates: [...]}]
 *   GET /templates/index_logo.json -> {} ; GET /templates/fuse_options.json -> search options
 *   GET /templates/<name>.json -> the workflow ; GET /templates/<name>-1.png -> a thumbnail drawn from its graph
 *   GET /workflow_templates -> {'tcd-studio': [names]} ; GET /workflow_templates/tcd-studio/<name>.json|.jpg
 */
import { Router, type Request, type Response } from 'express';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng } from '../../storage/png.js';

export const TEMPLATE_MODULE = 'tcd-studio';

interface GraphNode {
  pos?: unknown;
  size?: unknown;
  type?: unknown;
  mode?: unknown;
  widgets_values?: unknown;
}
interface Workflow {
  nodes?: GraphNode[];
}

/** Search fields and weights for the browser's fuzzy search (Fuse.js options). */
const FUSE_OPTIONS = {
  keys: [
    { name: 'name', weight: 0.3 },
    { name: 'title', weight: 0.3 },
    { name: 'description', weight: 0.2 },
    { name: 'tags', weight: 0.2 },
  ],
  threshold: 0.35,
  includeScore: true,
  includeMatches: true,
};

function templateNames(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .map((n) => n.slice(0, -5))
    .filter((n) => /^[\w.-]+$/.test(n))
    .sort();
}

function readWorkflow(dir: string, name: string): { text: string; wf: Workflow } | null {
  if (!templateNames(dir).includes(name)) return null;
  const text = readFileSync(join(dir, `${name}.json`), 'utf8');
  try {
    return { text, wf: JSON.parse(text) as Workflow };
  } catch {
    return null;
  }
}

/** The first note's text, as a description (workflows carry their explanation in a Note node). */
function describe(wf: Workflow): string {
  const note = wf.nodes?.find((n) => typeof n.type === 'string' && /note/i.test(n.type));
  const text =
    Array.isArray(note?.widgets_values) && typeof note.widgets_values[0] === 'string' ? note.widgets_values[0] : '';
  return text.replace(/\s+/g, ' ').trim().slice(0, 200) || 'tcd-studio workflow';
}

const pair = (v: unknown): [number, number] | null => {
  if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number') return [v[0], v[1]];
  if (v && typeof v === 'object' && typeof (v as Record<string, unknown>)['0'] === 'number') {
    const o = v as Record<string, number>;
    return [o['0'], o['1']];
  }
  return null;
};

/** A small picture of the graph: each node a box with a title bar, scaled to fit. */
export function workflowThumbnail(wf: Workflow, w = 256, h = 192): Buffer {
  const px = new Uint8Array(w * h * 3).fill(24);
  const boxes = (wf.nodes ?? [])
    .map((n) => ({ p: pair(n.pos), s: pair(n.size) ?? [200, 100], mode: n.mode }))
    .filter((b) => b.p);
  if (boxes.length) {
    const x0 = Math.min(...boxes.map((b) => b.p![0])),
      y0 = Math.min(...boxes.map((b) => b.p![1] - 30));
    const x1 = Math.max(...boxes.map((b) => b.p![0] + b.s[0])),
      y1 = Math.max(...boxes.map((b) => b.p![1] + b.s[1]));
    const k = Math.min((w - 16) / Math.max(1, x1 - x0), (h - 16) / Math.max(1, y1 - y0));
    const fill = (ax: number, ay: number, bx: number, by: number, rgb: number[]) => {
      for (let y = Math.max(0, Math.round(ay)); y < Math.min(h, Math.round(by)); y++) {
        for (let x = Math.max(0, Math.round(ax)); x < Math.min(w, Math.round(bx)); x++) px.set(rgb, (y * w + x) * 3);
      }
    };
    for (const b of boxes) {
      const ax = 8 + (b.p![0] - x0) * k,
        ay = 8 + (b.p![1] - 30 - y0) * k;
      const bx = ax + b.s[0] * k,
        by = ay + (b.s[1] + 30) * k;
      fill(ax, ay, bx, by, [120, 120, 120]);
      fill(ax + 1, ay + 1, bx - 1, by - 1, b.mode === 4 ? [70, 40, 90] : b.mode === 2 ? [40, 40, 40] : [53, 53, 53]);
      fill(ax + 1, ay + 1, bx - 1, ay + Math.max(2, 30 * k), [72, 96, 128]);
    }
  }
  return encodePng(px, w, h, 3);
}

export function templateRoutes(workflowsDir: string): Router {
  const r = Router();
  const index = (_req: Request, res: Response) => {
    const templates = templateNames(workflowsDir).map((name) => {
      const wf = readWorkflow(workflowsDir, name)?.wf ?? {};
      return {
        name,
        title: name.replace(/[-_]/g, ' '),
        description: describe(wf),
        mediaType: 'image',
        mediaSubtype: 'png',
        tags: ['TCD'],
      };
    });
    res.json([{ moduleName: 'default', title: 'tcd-studio', category: 'tcd-studio', type: 'image', templates }]);
  };
  r.get('/templates/index.json', index);
  r.get(/^\/templates\/index\.[\w-]+\.json$/, index);
  r.get('/templates/index_logo.json', (_req, res) => {
    res.json({});
  });
  r.get('/templates/fuse_options.json', (_req, res) => {
    res.json(FUSE_OPTIONS);
  });
  const file = (name: string, ext: string, res: Response, next: () => void) => {
    const t = readWorkflow(workflowsDir, name);
    if (!t) {
      next();
      return;
    }
    if (ext === 'json') res.type('application/json').send(t.text);
    else res.type('image/png').send(workflowThumbnail(t.wf));
  };
  r.get('/templates/:file', (req: Request, res: Response, next) => {
    const m = /^([\w.-]+?)(?:-\d+)?\.(json|png|webp|jpg|jpeg)$/.exec(String(req.params.file));
    if (!m) {
      next();
      return;
    }
    // <name>.json is the workflow; <name>-1.png (any image extension) its thumbnail
    const isJson = m[2] === 'json';
    file(isJson ? String(req.params.file).slice(0, -5) : m[1], m[2], res, next);
  });
  r.get('/workflow_templates', (_req, res) => {
    res.json({ [TEMPLATE_MODULE]: templateNames(workflowsDir) });
  });
  r.get('/workflow_templates/:module/:file', (req: Request, res: Response, next) => {
    const m = /^([\w.-]+)\.(json|png|webp|jpg|jpeg)$/.exec(String(req.params.file));
    if (req.params.module !== TEMPLATE_MODULE || !m) {
      next();
      return;
    }
    file(m[1], m[2], res, next);
  });
  return r;
}
