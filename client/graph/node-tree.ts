// The node library's category tree, built from object_info (plus the editor's own nodes) by splitting categories
// on "/", so node types a server adds appear without any client change.
import type { ObjectInfo } from './types.js';

export interface NodeEntry {
  type: string;
  title: string;
  category: string;
  description: string;
}
export interface CategoryNode {
  name: string;
  path: string;
  children: CategoryNode[];
  nodes: NodeEntry[];
}

/**
 * @example nodeTree(info).children.map((c) => c.name) // ['conditioning', 'image', 'latent', 'loaders', ...]
 */
export function nodeTree(
  info: ObjectInfo,
  extra: Record<string, { title: string; category: string; description: string }> = {},
): CategoryNode {
  const root: CategoryNode = { name: '', path: '', children: [], nodes: [] };
  const entries: NodeEntry[] = [
    ...Object.entries(info).map(([type, n]) => ({
      type,
      title: n.display_name ?? type,
      category: n.category ?? 'other',
      description: n.description ?? '',
    })),
    ...Object.entries(extra)
      .filter(([type]) => !info[type])
      .map(([type, e]) => ({ type, ...e })),
  ];
  for (const e of entries) {
    let at = root;
    for (const part of e.category.split('/').filter(Boolean)) {
      let next = at.children.find((c) => c.name === part);
      if (!next)
        at.children.push((next = { name: part, path: at.path ? `${at.path}/${part}` : part, children: [], nodes: [] }));
      at = next;
    }
    at.nodes.push(e);
  }
  const sort = (c: CategoryNode) => {
    c.children.sort((a, b) => a.name.localeCompare(b.name));
    c.nodes.sort((a, b) => a.title.localeCompare(b.title));
    c.children.forEach(sort);
  };
  sort(root);
  return root;
}
