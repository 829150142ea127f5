// Output images (this session's and the server's history), newest first; a click opens the lightbox.
import type { Session } from './session.js';

export function GalleryPanel({ session }: { session: Session }) {
  return (
    <section className="panel gallery" data-testid="gallery">
      <h4>
        Gallery <span className="muted">({session.gallery.length})</span>
      </h4>
      <div className="thumbs">
        {session.gallery.map((img) => (
          <button key={img.url} className="thumb" title={img.filename} onClick={() => session.openLightbox(img.url)}>
            <img src={img.url} alt={img.filename} loading="lazy" />
          </button>
        ))}
      </div>
    </section>
  );
}
