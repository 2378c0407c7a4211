/**
 * @module
 * Clients that need nothing but `fetch` (Node and browsers): the agent client that builds,
 * signs, submits and verifies agent entries, and a tlog-tiles reader.
 */
export * from './agent.js';
export * from './tile-client.js';
export * from './log-auditor.js';
export * from './export.js';
