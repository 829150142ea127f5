// Asks for the server's access token once; the token is kept in localStorage by the caller.
import { useState } from 'react';

/** `refused`: the last token tried was refused by the server (shown as an error above the field). */
export function TokenDialog({ onSubmit, refused }: { onSubmit: (token: string) => void; refused: boolean }) {
  const [value, setValue] = useState('');
  return (
    <div className="modal-backdrop">
      <form
        className="modal"
        data-testid="token-dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) {
            onSubmit(value.trim());
            setValue('');
          }
        }}
      >
        <h3>Access token required</h3>
        <p>This server requires a token. It is stored in this browser only.</p>
        {refused && (
          <p className="error" data-testid="token-error">
            The server refused that token. Check it and try again.
          </p>
        )}
        <input
          autoFocus
          type="password"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          placeholder="token"
          name="token"
        />
        <button type="submit">Connect</button>
      </form>
    </div>
  );
}
