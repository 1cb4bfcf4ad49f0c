export * from './backend.js';
export * from './connection.js';
export * from './fd-poller.js';
export * from './memory-table.js';
export * from './protocol.js';
export * from './server.js';
