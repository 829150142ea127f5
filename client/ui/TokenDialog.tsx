// Asks for the server's access token once; the token is kept in localStorage by the caller.
import { useState } from 'react';

export function TokenDialog({ onSubmit }: { onSubmit: (token: string) => void }) {
  const [value, setValue] = useState('');
  return (
    <div className="modal-backdrop">
      <form className="modal" data-testid="token-dialog" onSubmit={(e) => { e.preventDefault(); if (value.trim()) onSubmit(value.trim()); }}>
        <h3>Access token required</h3>
        <p>This server requires a token. It is stored in this browser only.</p>
        <input autoFocus type="password" value={value} onChange={(e) => setValue(e.target.value)} placeholder="token" name="token" />
        <button type="submit">Connect</button>
      </form>
    </div>
  );
}
