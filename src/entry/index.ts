/**
 * @module
 * Agent audit entries (spec/agent-entries.md): canonical CBOR, the entry schema and its
 * JSON form, the signed envelope that is a leaf of the log, payload commitments, the
 * agent key registry and run audits. Pure: no Node built-ins, runs in a browser.
 */
export * from './cbor.js';
export * from './entry.js';
export * from './envelope.js';
export * from './payload.js';
export * from './key-history.js';
export * from './run-audit.js';
