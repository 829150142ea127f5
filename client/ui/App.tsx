// The application shell: boots the API, the canvas editor and the websocket, and lays out the panels.
import { useEffect, useReducer, useRef, useState } from 'react';
import { HttpApi } from '../api/http.js';
import { clientId, editorSocket } from '../api/socket.js';
import { setToken } from '../api/token.js';
import { Editor } from '../canvas/editor.js';
import { runtime } from '../canvas/runtime-state.js';
import { previewRect } from '../canvas/node-draw.js';
import { imageInputs } from '../canvas/image-inputs.js';
import { defaultWorkflow } from '../graph/default-workflow.js';
import { workflowToPrompt } from '../graph/to-api.js';
import { Session } from './session.js';
import { Toolbar } from './Toolbar.js';
import { QueuePanel } from './QueuePanel.js';
import { GalleryPanel } from './GalleryPanel.js';
import { HistoryPanel } from './HistoryPanel.js';
import { Lightbox } from './Lightbox.js';
import { MODEL_MIME, ModelLibrary } from './ModelLibrary.js';
import { NODE_MIME, NodeLibrary } from './NodeLibrary.js';
import { SaveDialog } from './SaveDialog.js';
import { MessagesPanel } from './MessagesPanel.js';
import { TokenDialog } from './TokenDialog.js';

declare global {
  interface Window {
    __tcd?: Record<string, unknown>;
  }
}

export function App() {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [session, setSession] = useState<Session | null>(null);
  const [bootError, setBootError] = useState<string | null>(null);
  const [askToken, setAskToken] = useState<{ submit: (t: string) => void; refused: boolean } | null>(null);
  const [, rerender] = useReducer((x: number) => x + 1, 0);
  /** The default graph was opened (no autosaved one): its first view is fitted once the panels are laid out. */
  const firstVisit = useRef(false);

  useEffect(() => {
    let cancelled = false;
    const api = new HttpApi();
    // Concurrent 401s share one dialog: every waiting request resumes once a token was entered.
    let waiting: (() => void)[] = [];
    api.onUnauthorized = (refused) =>
      new Promise<void>((resolve) => {
        waiting.push(resolve);
        setAskToken({
          refused: refused !== null,
          submit: (token: string) => {
            setToken(token);
            setAskToken(null);
            const resume = waiting;
            waiting = [];
            for (const r of resume) r();
          },
        });
      });
    (async () => {
      const info = await api.objectInfo();
      if (cancelled || !canvasRef.current) return;
      const editor = new Editor(canvasRef.current, info);
      const resumed = Editor.restore();
      editor.load(resumed ?? defaultWorkflow(), { resume: !!resumed });
      firstVisit.current = !resumed;
      const socket = editorSocket(clientId());
      const s = new Session(api, socket, editor);
      imageInputs.upload = (f) => api.uploadImage(f);
      imageInputs.viewUrl = (name) => api.viewUrl({ filename: name, subfolder: '', type: 'input' });
      imageInputs.afterUpload = async () => editor.refreshLists(await api.objectInfo());
      imageInputs.onError = (m) => s.note('error', m);
      editor.onChange = rerender;
      editor.onQueueShortcut = (front) => void s.queue({ front });
      editor.onRefreshShortcut = () => void s.refreshModels();
      editor.onSaveShortcut = () => void s.save();
      // Another graph now: named after its file, and Ctrl+S asks before it could replace a workflow saved earlier.
      editor.onFileOpened = (name) => s.setWorkflowName(name);
      s.subscribe(rerender);
      socket.connect();
      // Test hooks: browser tests assert graph state through these rather than pixels.
      window.__tcd = {
        app: s,
        session: s,
        editor,
        graph: editor.graph,
        canvas: editor.canvas,
        runtime,
        socket,
        api,
        toPrompt: () => workflowToPrompt(editor.serialize(), editor.objectInfo),
        previewRect: (id: number) => {
          const n = editor.nodeById(id);
          return n ? previewRect(n) : null;
        },
      };
      setSession(s);
    })().catch((e) => setBootError(String(e?.message ?? e)));
    return () => {
      cancelled = true;
    };
  }, []);

  useEffect(() => {
    if (session) document.title = session.title();
  });

  // After the render that added the side panel: the canvas has its final width now.
  useEffect(() => {
    if (!session || !firstVisit.current) return;
    firstVisit.current = false;
    session.editor.fitIfCut();
  }, [session]);

  const onDrop = async (e: React.DragEvent) => {
    e.preventDefault();
    const nodeType = e.dataTransfer.getData(NODE_MIME);
    if (nodeType && session) {
      session.editor.addNode(nodeType, [e.clientX, e.clientY]);
      return;
    }
    const model = e.dataTransfer.getData(MODEL_MIME);
    if (model && session) {
      const { folder, file } = JSON.parse(model) as { folder: string; file: string };
      if (!session.editor.addModelLoader(folder, file, [e.clientX, e.clientY]))
        session.note('error', `no loader node for ${folder}/${file}`);
      return;
    }
    const file = e.dataTransfer.files?.[0];
    if (!file || !session) return;
    const err = await session.editor.dropFile(file, [e.clientX, e.clientY]);
    if (err) session.note('error', err);
  };

  return (
    <div className="app">
      {session ? (
        <Toolbar session={session} />
      ) : (
        <header className="toolbar">
          <strong className="brand">tcd-studio</strong>
          <span className="muted">{bootError ?? 'loading node definitions…'}</span>
        </header>
      )}
      <main className="body">
        <div
          className="canvas-wrap"
          onDragOver={(e) => e.preventDefault()}
          onDrop={(e) => void onDrop(e)}
          data-testid="canvas-wrap"
        >
          <canvas ref={canvasRef} data-testid="graph-canvas" />
        </div>
        {session?.sidePanel && (
          <aside className="side">
            <MessagesPanel session={session} />
            <QueuePanel session={session} />
            <HistoryPanel session={session} />
            <ModelLibrary session={session} />
            <NodeLibrary session={session} />
            <GalleryPanel session={session} />
          </aside>
        )}
      </main>
      {session && <Lightbox session={session} />}
      {session?.askingName && <SaveDialog session={session} />}
      {askToken && <TokenDialog onSubmit={askToken.submit} refused={askToken.refused} />}
    </div>
  );
}
