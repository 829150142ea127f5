/**
 * The wire protocol between the server, the browser editor and the typed client, in one browser-safe module:
 * websocket events and client messages (events.ts), HTTP error bodies (errors.ts), image references (images.ts), binary preview frames
 * (preview.ts), the reconnecting websocket client (event-socket.ts) and the UI->API workflow converter
 * (workflow/ui-to-api.ts). No Node-only imports: Vite bundles it into the editor.
 */
export * from './events.js';
export * from './errors.js';
export * from './images.js';
export * from './preview.js';
export * from './event-socket.js';
export * from './workflow/ui-to-api.js';
