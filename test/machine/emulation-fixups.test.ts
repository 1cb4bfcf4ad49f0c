// Completing instructions the host's KVM could not emulate (src/machine/emulation-fixups.ts),
// against a fake vCPU: exact register effects, and refusal of everything not completed exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KvmVcpu, Regs, Sregs } from '../../src/kvm/vcpu.js';
import { REG_NAMES } from '../../src/kvm/layouts.js';
import { classify, completeInstruction } from '../../src/machine/emulation-fixups.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';

function segment(selector: number, l: number, db: number): Sregs['cs'] {
  return { base: 0n, limit: 0xffffffff, selector, type: 11, present: 1, dpl: 0, db, s: 1, l, g: 1, avl: 0, unusable: 0 };
}

class FakeVcpu {
  regs: Regs;
  sregs: Sregs;
  injected: number[] = [];
  constructor(init: Partial<Regs> = {}, long = true) {
    this.regs = Object.fromEntries(REG_NAMES.map((n) => [n, 0n])) as Regs;
    Object.assign(this.regs, { rip: 0x1000n, rflags: 2n }, init);
    const cs = long ? segment(0x10, 1, 0) : segment(8, 0, 1);
    this.sregs = {
      cs, ds: segment(0x18, 0, 1), es: segment(0x18, 0, 1), fs: segment(0x18, 0, 1), gs: segment(0x18, 0, 1), ss: segment(0x18, 0, 1),
      tr: segment(0x20, 0, 0), ldt: segment(0, 0, 0), gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
      cr0: long ? 0x80050033n : 0x11n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: long ? 0xd01n : 0n, apicBase: 0xfee00900n,
    };
  }
  getRegs(): Regs { return { ...this.regs }; }
  setRegs(regs: Regs): void { this.regs = { ...regs }; }
  getSregs(): Sregs { return this.sregs; }
  injectException(vector: number): void { this.injected.push(vector); }
  asVcpu(): KvmVcpu { return this as unknown as KvmVcpu; }
}

const AC = 1n << 18n;

test('fwait is skipped, clac/stac edit AC, int3 advances RIP and injects #BP', () => {
  const v = new FakeVcpu({ rflags: 2n | AC });
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0x9b, 0x90)), 'fwait');
  assert.equal(v.regs.rip, 0x1001n);
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0x0f, 0x01, 0xca)), 'clac');
  assert.equal(v.regs.rip, 0x1004n);
  assert.equal(v.regs.rflags & AC, 0n);
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0x0f, 0x01, 0xcb)), 'stac');
  assert.equal(v.regs.rflags & AC, AC);
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0xcc)), 'int3');
  assert.equal(v.regs.rip, 0x1008n);
  assert.deepEqual(v.injected, [3]);
});

test('iret32 pops EIP, CS, EFLAGS in flat 32-bit protected mode without paging', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 0x10000 }]);
  memory.writeU32LE(0x7000, 0x2345);
  memory.writeU32LE(0x7004, 8);
  memory.writeU32LE(0x7008, 0x202);
  const v = new FakeVcpu({ rsp: 0x7000n }, false);
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0xcf), memory), 'iret32');
  assert.equal(v.regs.rip, 0x2345n);
  assert.equal(v.regs.rsp, 0x700cn);
  assert.equal(v.regs.rflags, 0x202n);
  // A different code segment (a far return to another selector) is not completed.
  memory.writeU32LE(0x7004, 0x10);
  const w = new FakeVcpu({ rsp: 0x7000n }, false);
  assert.equal(completeInstruction(w.asVcpu(), Uint8Array.of(0xcf), memory), undefined);
  assert.equal(w.regs.rip, 0x1000n);
  // In long mode iret is not the 32-bit form: refused.
  assert.equal(completeInstruction(new FakeVcpu({ rsp: 0x7000n }).asVcpu(), Uint8Array.of(0xcf), memory), undefined);
});

test('instructions novm cannot complete exactly are refused and change nothing', () => {
  for (const bytes of [
    Uint8Array.of(0x48, 0x0f, 0xc7, 0x0e), // cmpxchg16b [rsi] (memory operand)
    Uint8Array.of(0x0f, 0xae, 0x2f), // xrstor [rdi]
    Uint8Array.of(0xf3, 0x0f, 0xb8, 0x07), // popcnt eax, [rdi] (memory operand)
    Uint8Array.of(), // nothing reported
  ]) {
    const v = new FakeVcpu();
    assert.equal(classify(bytes), undefined);
    assert.equal(completeInstruction(v.asVcpu(), bytes), undefined);
    assert.equal(v.regs.rip, 0x1000n);
  }
});

test('popcnt reg,reg is completed exactly: operand sizes, REX registers, flags, RIP', () => {
  const ZF = 1n << 6n;
  const CF = 1n;
  // popcnt eax, ecx (F3 0F B8 C1): 32-bit result zero-extends; flags cleared, ZF clear.
  let v = new FakeVcpu({ rax: 0xffff_ffff_ffff_ffffn, rcx: 0xdead_beef_0000_00f0n, rflags: 2n | CF | ZF });
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0xf3, 0x0f, 0xb8, 0xc1, 0x90)), 'popcnt');
  assert.equal(v.regs.rax, 4n);
  assert.equal(v.regs.rflags, 2n);
  assert.equal(v.regs.rip, 0x1004n);
  // popcnt r9, r14 (F3 4D 0F B8 CE): 64-bit.
  v = new FakeVcpu({ r9: 7n, r14: 0x8000_0000_0000_0001n });
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0xf3, 0x4d, 0x0f, 0xb8, 0xce)), 'popcnt');
  assert.equal(v.regs.r9, 2n);
  assert.equal(v.regs.rip, 0x1005n);
  // popcnt dx, si (66 F3 0F B8 D6): 16-bit keeps the upper bits; a zero source sets ZF.
  v = new FakeVcpu({ rdx: 0x1234_5678_9abc_def0n, rsi: 0xffff_0000n });
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0x66, 0xf3, 0x0f, 0xb8, 0xd6)), 'popcnt');
  assert.equal(v.regs.rdx, 0x1234_5678_9abc_0000n);
  assert.equal(v.regs.rflags & ZF, ZF);
  assert.equal(v.regs.rip, 0x1005n);
  // Same register, 64-bit: popcnt rax, rax.
  v = new FakeVcpu({ rax: 0xffn });
  assert.equal(completeInstruction(v.asVcpu(), Uint8Array.of(0xf3, 0x48, 0x0f, 0xb8, 0xc0)), 'popcnt');
  assert.equal(v.regs.rax, 8n);
});

test('popcnt forms novm does not complete are refused', () => {
  for (const [bytes, long, tf] of [
    [Uint8Array.of(0xf3, 0x48, 0x0f, 0xb8, 0x07), true, false], // memory source
    [Uint8Array.of(0x0f, 0xb8, 0xc1), true, false], // no F3: JMPE / not popcnt
    [Uint8Array.of(0xf3, 0x0f, 0xb8, 0xc1), false, false], // outside 64-bit mode
    [Uint8Array.of(0xf3, 0x0f, 0xb8, 0xc1), true, true], // single-stepping
  ] as const) {
    const v = new FakeVcpu({ rcx: 3n, rflags: tf ? 2n | (1n << 8n) : 2n }, long);
    assert.equal(completeInstruction(v.asVcpu(), bytes), undefined);
    assert.equal(v.regs.rip, 0x1000n);
    assert.equal(v.regs.rax, 0n);
  }
});
