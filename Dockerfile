# Hearth: one image for every mode and role (embedded by default; cluster mode with
# HEARTH_DATABASE_URL and HEARTH_NATS_URL, roles with HEARTH_ROLES). See docs/operations.md.
#   docker build -t hearth:0.1.0-dev-local .
#   docker run -p 8080:8080 -p 1883:1883 -v hearth-data:/data hearth:0.1.0-dev-local

# Build stage: production dependencies only. better-sqlite3 compiles its native addon here, so
# the toolchain stays out of the runtime image; same Debian release as the runtime (same glibc).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node-gyp builds against the headers that ship with this Node instead of downloading them.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
# The server's TypeScript compiled into dist/ (esbuild, a production dependency): the image runs JavaScript.
COPY scripts/build-server.mjs ./scripts/build-server.mjs
COPY src ./src
RUN node scripts/build-server.mjs

# Console stage: the web console (docs/console.md) is built with the dev dependencies (Vite, React,
# Ant Design); only its output, web/dist, goes into the image. No native addon is needed to build it.
FROM node:20-bookworm-slim AS console
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY web ./web
COPY scripts/build-console.ts ./scripts/build-console.ts
RUN node --import tsx scripts/build-console.ts

# Runtime stage: Node, the production node_modules and the compiled server; no compiler run, no npm install.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HEARTH_DATA_DIR=/data
RUN groupadd --gid 10001 hearth \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hearth \
 && mkdir -p /data \
 && chown 10001:10001 /data
WORKDIR /app
# The application files stay owned by root: the process can read them, not change them.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY scripts/build-server.mjs ./scripts/build-server.mjs
COPY --from=console /app/web/dist ./web/dist
USER 10001:10001
VOLUME ["/data"]
# HTTP (REST API, /mqtt WebSocket, /healthz, /readyz, /metrics) and MQTT.
EXPOSE 8080 1883
# The slim image has no curl: node asks /healthz itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HEARTH_HTTP_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM starts the graceful shutdown (readiness off, drain, paced disconnects, exit).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/hearth.js"]
CMD ["start"]
