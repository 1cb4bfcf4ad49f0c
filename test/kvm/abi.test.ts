// Every ioctl number, struct size and field offset novm uses, against the machine's
// <linux/kvm.h>, by compiling a C program that prints them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as K from '../../src/kvm/constants.js';
import { FPU, IOEVENTFD, IRQFD, REG_NAMES, RUN, SEGMENT, SIZEOF, SREGS, VCPU_EVENTS } from '../../src/kvm/layouts.js';

const skip = existsSync('/usr/include/linux/kvm.h') ? false : 'no <linux/kvm.h> on this machine (install linux-libc-dev)';

test('KVM ioctl numbers, constants and struct layouts match <linux/kvm.h>', { skip }, () => {
  const checks: Array<[string, string, number]> = [];
  for (const [name, value] of Object.entries(K)) {
    if (typeof value === 'number' && name !== 'KVM_API_VERSION') checks.push([name, name, value]);
  }
  checks.push(['KVM_API_VERSION', 'KVM_API_VERSION', K.KVM_API_VERSION]);
  for (const [name, size] of Object.entries(SIZEOF)) checks.push([`sizeof ${name}`, `sizeof(struct ${name})`, size]);
  const runFields: Record<string, string> = {
    request_interrupt_window: 'request_interrupt_window', immediate_exit: 'immediate_exit', exit_reason: 'exit_reason',
    ready_for_interrupt_injection: 'ready_for_interrupt_injection', if_flag: 'if_flag', flags: 'flags', cr8: 'cr8', apic_base: 'apic_base',
    io_direction: 'io.direction', io_size: 'io.size', io_port: 'io.port', io_count: 'io.count', io_data_offset: 'io.data_offset',
    mmio_phys_addr: 'mmio.phys_addr', mmio_data: 'mmio.data', mmio_len: 'mmio.len', mmio_is_write: 'mmio.is_write',
    internal_suberror: 'internal.suberror', internal_ndata: 'internal.ndata', internal_data: 'internal.data',
    emulation_insn_size: 'emulation_failure.insn_size', emulation_insn_bytes: 'emulation_failure.insn_bytes',
    system_event_type: 'system_event.type', system_event_ndata: 'system_event.ndata',
    fail_entry_reason: 'fail_entry.hardware_entry_failure_reason', fail_entry_cpu: 'fail_entry.cpu',
    ex_exception: 'ex.exception', ex_error_code: 'ex.error_code', kvm_valid_regs: 'kvm_valid_regs',
  };
  for (const [key, field] of Object.entries(runFields)) checks.push([`kvm_run.${field}`, `offsetof(struct kvm_run, ${field})`, RUN[key as keyof typeof RUN]]);
  for (const [field, offset] of Object.entries(SREGS)) checks.push([`kvm_sregs.${field}`, `offsetof(struct kvm_sregs, ${field})`, offset]);
  for (const [field, offset] of Object.entries(SEGMENT)) checks.push([`kvm_segment.${field}`, `offsetof(struct kvm_segment, ${field})`, offset]);
  REG_NAMES.forEach((name, i) => checks.push([`kvm_regs.${name}`, `offsetof(struct kvm_regs, ${name})`, i * 8]));
  for (const [field, offset] of Object.entries(IOEVENTFD)) checks.push([`kvm_ioeventfd.${field}`, `offsetof(struct kvm_ioeventfd, ${field})`, offset]);
  for (const [field, offset] of Object.entries(IRQFD)) checks.push([`kvm_irqfd.${field}`, `offsetof(struct kvm_irqfd, ${field})`, offset]);
  for (const [field, offset] of Object.entries(VCPU_EVENTS)) checks.push([`kvm_vcpu_events.${field}`, `offsetof(struct kvm_vcpu_events, ${field})`, offset]);
  checks.push(['kvm_irq_routing_entry.u', 'offsetof(struct kvm_irq_routing_entry, u)', 16]);
  for (const [field, offset] of Object.entries(FPU)) checks.push([`kvm_fpu.${field}`, `offsetof(struct kvm_fpu, ${field})`, offset]);

  const program = ['#include <linux/kvm.h>', '#include <stddef.h>', '#include <stdio.h>', 'int main(void) {',
    ...checks.map(([label, expr]) => `  printf("%s=%llu\\n", "${label}", (unsigned long long)(${expr}));`), '  return 0;', '}'].join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'novm-abi-'));
  writeFileSync(join(dir, 'abi.c'), program);
  execFileSync('gcc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')]);
  const printed = new Map(execFileSync(join(dir, 'abi'), { encoding: 'utf8' }).trim().split('\n').map((line) => {
    const at = line.lastIndexOf('=');
    return [line.slice(0, at), Number(line.slice(at + 1))] as const;
  }));
  const mismatches = checks.filter(([label, , value]) => printed.get(label) !== value).map(([label, , value]) => `${label}: novm ${value}, header ${printed.get(label)}`);
  assert.deepEqual(mismatches, []);
  assert.ok(checks.length > 100, `checked ${checks.length} values`);
});
