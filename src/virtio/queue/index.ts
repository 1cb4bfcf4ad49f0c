export * from './descriptor-chain.js';
export * from './errors.js';
export * from './features.js';
export * from './memory-fence.js';
export * from './split-queue.js';
export * from './packed-queue.js';
export * from './virt-queue.js';
