// vhost-user wire format (QEMU docs/interop/vhost-user.rst): a 12-byte header
// {request u32, flags u32, size u32} then `size` bytes of payload, little-endian, descriptors
// attached with SCM_RIGHTS. Only the back-end (device) side is implemented here.

export const HEADER_SIZE = 12;
/** The largest payload we accept: SET_MEM_TABLE with 8 regions is 264 bytes, GET_CONFIG 268. */
export const MAX_PAYLOAD = 4096;
/** Descriptors one message may carry: SET_MEM_TABLE with VHOST_MEMORY_BASELINE_NREGIONS. */
export const MAX_FDS = 8;
export const MAX_MEM_REGIONS = 8;
export const MAX_CONFIG_SIZE = 256;

export const FLAG_VERSION = 0x1;
export const FLAG_VERSION_MASK = 0x3;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;

export const enum Request {
  GetFeatures = 1,
  SetFeatures = 2,
  SetOwner = 3,
  ResetOwner = 4,
  SetMemTable = 5,
  SetLogBase = 6,
  SetLogFd = 7,
  SetVringNum = 8,
  SetVringAddr = 9,
  SetVringBase = 10,
  GetVringBase = 11,
  SetVringKick = 12,
  SetVringCall = 13,
  SetVringErr = 14,
  GetProtocolFeatures = 15,
  SetProtocolFeatures = 16,
  GetQueueNum = 17,
  SetVringEnable = 18,
  SendRarp = 19,
  NetSetMtu = 20,
  SetBackendReqFd = 21,
  IotlbMsg = 22,
  SetVringEndian = 23,
  GetConfig = 24,
  SetConfig = 25,
  GetInflightFd = 31,
  SetInflightFd = 32,
  ResetDevice = 34,
  VringKick = 35,
  GetMaxMemSlots = 36,
  AddMemReg = 37,
  RemMemReg = 38,
  SetStatus = 39,
  GetStatus = 40,
}

export const REQUEST_NAMES: Readonly<Record<number, string>> = {
  1: 'GET_FEATURES', 2: 'SET_FEATURES', 3: 'SET_OWNER', 4: 'RESET_OWNER', 5: 'SET_MEM_TABLE',
  6: 'SET_LOG_BASE', 7: 'SET_LOG_FD', 8: 'SET_VRING_NUM', 9: 'SET_VRING_ADDR', 10: 'SET_VRING_BASE',
  11: 'GET_VRING_BASE', 12: 'SET_VRING_KICK', 13: 'SET_VRING_CALL', 14: 'SET_VRING_ERR',
  15: 'GET_PROTOCOL_FEATURES', 16: 'SET_PROTOCOL_FEATURES', 17: 'GET_QUEUE_NUM', 18: 'SET_VRING_ENABLE',
  19: 'SEND_RARP', 20: 'NET_SET_MTU', 21: 'SET_BACKEND_REQ_FD', 22: 'IOTLB_MSG', 23: 'SET_VRING_ENDIAN',
  24: 'GET_CONFIG', 25: 'SET_CONFIG', 31: 'GET_INFLIGHT_FD', 32: 'SET_INFLIGHT_FD', 34: 'RESET_DEVICE',
  35: 'VRING_KICK', 36: 'GET_MAX_MEM_SLOTS', 37: 'ADD_MEM_REG', 38: 'REM_MEM_REG', 39: 'SET_STATUS', 40: 'GET_STATUS',
};

export function requestName(request: number): string {
  return REQUEST_NAMES[request] ?? `request ${request}`;
}

/** Virtio feature bit 30: the back end speaks the protocol-feature extension. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 1n << 30n;

export const PROTOCOL_F_MQ = 1n << 0n;
export const PROTOCOL_F_REPLY_ACK = 1n << 3n;
export const PROTOCOL_F_CONFIG = 1n << 9n;
export const PROTOCOL_F_RESET_DEVICE = 1n << 13n;
export const PROTOCOL_F_CONFIGURE_MEM_SLOTS = 1n << 15n;
export const PROTOCOL_F_STATUS = 1n << 16n;

/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 queue index, bit 8 "no descriptor attached". */
export const VRING_FILE_INDEX_MASK = 0xffn;
export const VRING_FILE_NOFD = 1n << 8n;

/** Requests whose reply is part of the protocol (not a REPLY_ACK). */
export const REQUESTS_WITH_REPLY: ReadonlySet<number> = new Set([
  Request.GetFeatures, Request.GetProtocolFeatures, Request.GetVringBase, Request.GetQueueNum,
  Request.GetConfig, Request.GetMaxMemSlots, Request.GetStatus,
]);
