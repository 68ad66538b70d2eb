import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway serves dist/ under "/" (gateway/dashboard.py); `npm run dev` proxies the API to the dev stack.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1500 },
  server: { proxy: { "/v1": "http://127.0.0.1:8700" } },
});
