export * from './device-status.js';
export * from './transport-core.js';
export * from './virtio-mmio.js';
export * from './virtio-pci.js';
