export * from './constants.js';
export * from './cpuid-codec.js';
export * from './errors.js';
export * from './layouts.js';
export * from './system.js';
export * from './vm.js';
export * from './vcpu.js';
