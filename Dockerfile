# The glasslog server. Build: docker build -t glasslog .
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
VOLUME /data
EXPOSE 8080
# --initial-heap-size: see SERVE_NODE_OPTIONS in src/cli/serve.ts
ENTRYPOINT ["node", "--initial-heap-size=256", "dist/cli/main.js"]
CMD ["serve", "--data", "/data", "--listen", "0.0.0.0:8080"]
