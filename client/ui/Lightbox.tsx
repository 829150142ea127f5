// One gallery image shown large; arrows (buttons or ←/→) step through the gallery, Escape or a click outside closes.
import { useEffect } from 'react';
import type { Session } from './session.js';

export function Lightbox({ session }: { session: Session }) {
  const i = session.lightbox;
  useEffect(() => {
    if (i === null) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'ArrowLeft') session.stepLightbox(-1);
      else if (e.key === 'ArrowRight') session.stepLightbox(1);
      else if (e.key === 'Escape') session.closeLightbox();
      else return;
      e.preventDefault();
      e.stopPropagation();
    };
    document.addEventListener('keydown', onKey, true);
    return () => document.removeEventListener('keydown', onKey, true);
  }, [i, session]);
  if (i === null || !session.gallery[i]) return null;
  const img = session.gallery[i];
  return (
    <div className="modal-backdrop" onClick={() => session.closeLightbox()}>
      <div
        className="lightbox"
        data-testid="lightbox"
        role="dialog"
        aria-label="image"
        onClick={(e) => e.stopPropagation()}
      >
        <button className="nav" onClick={() => session.stepLightbox(-1)} aria-label="previous">
          ‹
        </button>
        <figure>
          <img src={img.url} alt={img.filename} />
          <figcaption>
            {img.filename} · {i + 1} / {session.gallery.length}
          </figcaption>
        </figure>
        <button className="nav" onClick={() => session.stepLightbox(1)} aria-label="next">
          ›
        </button>
        <button className="close" onClick={() => session.closeLightbox()} aria-label="close" autoFocus>
          ×
        </button>
      </div>
    </div>
  );
}
