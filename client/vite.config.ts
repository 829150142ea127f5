// Builds the editor into dist/client/ at the project root, with relative asset URLs so the server may mount it anywhere.
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: fileURLToPath(new URL('../dist/client', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    sourcemap: true,
  },
  server: {
    proxy: {
      '/api': { target: process.env.TCD_SERVER ?? 'http://127.0.0.1:8188', ws: true },
      '/ws': { target: process.env.TCD_SERVER ?? 'http://127.0.0.1:8188', ws: true },
    },
  },
});
