export * from './address.js';
export * from './errors.js';
export * from './guest-memory.js';
export * from './layout.js';
export * from './memfd-memory.js';
