// Public API of the file-system engine (see docs/fs.md).
//
//   const union = new UnionFs(config);                 // FsConfig: the mounts (layers per VM path)
//   const handler = new FuseHandler(union, options);
//   handler.handle(requestBytes, (reply) => ...);      // reply: Uint8Array | null (null = no reply)
//   FuseHandler.isForget(requestBytes) / handler.forget(requestBytes)   // FORGET fast path
export { type FsConfig, type MountSpec, configFromFlags, resolveConfig } from './config.js';
export { Errno, FsError } from './errors.js';
export { FuseHandler, type HandlerMetrics, type HandlerOptions, type ReplyCallback } from './fuse-handler.js';
export { MAX_WRITE, REQUEST_BUFFER_SIZE, FUSE_KERNEL_MINOR_VERSION, FUSE_MIN_MINOR_VERSION } from './fuse-abi.js';
export { UnionFs, type FsNode, type DirEntry } from './union.js';
export { DevFuseServer, FuseMountError, checkMountPoint, raiseFdLimit } from './dev-fuse-transport.js';
