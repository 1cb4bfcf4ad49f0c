// A full memory barrier for rings shared with another CPU or process.
//
// JavaScript has no fence over ordinary (non-shared) ArrayBuffers, which is what guest RAM
// views are. On x86-64 the only reordering that matters for virtqueues is a later load passing
// an earlier store (publishing used->idx, then reading used_event; writing avail_event, then
// re-reading avail->idx). V8 compiles Atomics read-modify-write operations to LOCK-prefixed
// instructions, and every LOCK-prefixed instruction is a full barrier on x86 (Intel SDM vol. 3
// §8.2.2), so one Atomics.add on a private cell orders all surrounding accesses. Cost: ~10 ns.
const cell = new Int32Array(new SharedArrayBuffer(4));

export function fullFence(): void {
  Atomics.add(cell, 0, 0);
}
