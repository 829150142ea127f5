// Output images of this session, newest first; click opens the full image.
import type { Session } from './session.js';

export function GalleryPanel({ session }: { session: Session }) {
  return (
    <section className="panel gallery" data-testid="gallery">
      <h4>Gallery <span className="muted">({session.gallery.length})</span></h4>
      <div className="thumbs">
        {session.gallery.map((img) => (
          <a key={img.url} href={img.url} target="_blank" rel="noreferrer" title={img.filename}>
            <img src={img.url} alt={img.filename} loading="lazy" />
          </a>
        ))}
      </div>
    </section>
  );
}
