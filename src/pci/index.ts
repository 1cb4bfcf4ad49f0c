export * from './config-space.js';
export * from './guest-log.js';
export * from './host-bridge.js';
export * from './msix.js';
export * from './pci-device.js';
export * from './segment.js';
