import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The console is served by Hearth itself (src/transports/http/console-routes.ts): the API is on the
// same origin, so there is no proxy and no base URL to configure. `npm run console:dev` proxies to
// a Hearth on localhost:8080 while editing.
export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      '/api': { target: 'http://localhost:8080', ws: true },
      '/docs': 'http://localhost:8080',
    },
  },
});
