// The node library: every node type from object_info in a category tree, with a fuzzy search. Click or Enter adds
// the node at the view's centre; dragging it onto the canvas adds it where it is dropped.
import { useMemo, useState } from 'react';
import { FRONTEND_NODES } from '../canvas/frontend-nodes.js';
import { nodeTree, type CategoryNode, type NodeEntry } from '../graph/node-tree.js';
import type { Session } from './session.js';

export const NODE_MIME = 'application/x-tcd-node';

function Entry({ session, e }: { session: Session; e: NodeEntry }) {
  return (
    <li
      className="library-node"
      tabIndex={0}
      draggable
      data-type={e.type}
      title={e.description || e.type}
      onClick={() => session.editor.addNode(e.type)}
      onKeyDown={(ev) => {
        if (ev.key === 'Enter') {
          ev.preventDefault();
          session.editor.addNode(e.type);
        }
      }}
      onDragStart={(ev) => {
        ev.dataTransfer.setData(NODE_MIME, e.type);
        ev.dataTransfer.effectAllowed = 'copy';
      }}
    >
      {e.title}
    </li>
  );
}

function Category({ session, c }: { session: Session; c: CategoryNode }) {
  return (
    <details data-category={c.path}>
      <summary>{c.name}</summary>
      <ul>
        {c.children.map((x) => (
          <li key={x.path}>
            <Category session={session} c={x} />
          </li>
        ))}
        {c.nodes.map((e) => (
          <Entry key={e.type} session={session} e={e} />
        ))}
      </ul>
    </details>
  );
}

export function NodeLibrary({ session }: { session: Session }) {
  const [query, setQuery] = useState('');
  const info = session.editor.objectInfo;
  const tree = useMemo(() => nodeTree(info, FRONTEND_NODES), [info]);
  const found = query.trim() ? session.editor.search(query.trim()) : null;
  const byType = (t: string): NodeEntry => ({
    type: t,
    title: info[t]?.display_name ?? FRONTEND_NODES[t]?.title ?? t,
    category: info[t]?.category ?? 'utils',
    description: info[t]?.description ?? '',
  });
  return (
    <section className="panel library" data-testid="node-library">
      <h4>Node library</h4>
      <input
        className="filter"
        placeholder="search nodes"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        aria-label="search nodes"
      />
      {found ? (
        <ul className="results">
          {found.map((t) => (
            <Entry key={t} session={session} e={byType(t)} />
          ))}
        </ul>
      ) : (
        <ul>
          {tree.children.map((c) => (
            <li key={c.path}>
              <Category session={session} c={c} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
