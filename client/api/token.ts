// The optional access token: asked once, kept in localStorage, sent as a Bearer header (HTTP) or ?token= (websocket).
const KEY = 'tcd-studio.token';

export function getToken(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token) localStorage.setItem(KEY, token);
  else localStorage.removeItem(KEY);
}
