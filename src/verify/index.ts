/**
 * @module
 * Client-side verification against a trust policy (c2sp.org/tlog-policy). Pure: no Node
 * built-ins, so it runs in browsers.
 */
export * from './policy.js';
export * from './evidence.js';
export * from './receipt.js';
export * from './consistency.js';
export * from './log-audit.js';
export * from './bundle.js';
