// What novm knows about the host: KVM presence and capabilities, hardware virtualization,
// nested PVM, and whether guest user space runs (the probe).
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import * as K from '../kvm/constants.js';
import { KvmError } from '../kvm/errors.js';
import { KvmSystem } from '../kvm/system.js';

export interface KvmFacts {
  readonly available: boolean;
  readonly reason: string;
  readonly apiVersion: number;
  readonly capabilities: Readonly<Record<string, boolean>>;
  readonly maxVcpus: number;
  readonly memorySlots: number;
}

export interface CpuFacts {
  readonly hardwareVirtualization: 'vmx' | 'svm' | 'none';
  readonly underHypervisor: boolean;
  /** The host's KVM is kvm_pvm: guest kernel mode is emulated (HOST-NOTES). */
  readonly pvm: boolean;
  readonly kernelRelease: string;
}

const CAPABILITIES: ReadonlyArray<[string, number]> = [
  ['irqchip', K.KVM_CAP_IRQCHIP], ['user-memory', K.KVM_CAP_USER_MEMORY], ['pit2', K.KVM_CAP_PIT2],
  ['irqfd', K.KVM_CAP_IRQFD], ['ioeventfd', K.KVM_CAP_IOEVENTFD], ['immediate-exit', K.KVM_CAP_IMMEDIATE_EXIT],
  ['irq-routing', K.KVM_CAP_IRQ_ROUTING], ['signal-msi', K.KVM_CAP_SIGNAL_MSI], ['ext-cpuid', K.KVM_CAP_EXT_CPUID],
  ['vcpu-events', K.KVM_CAP_VCPU_EVENTS], ['mp-state', K.KVM_CAP_MP_STATE],
];

export function kvmFacts(): KvmFacts {
  let system: KvmSystem;
  try {
    system = KvmSystem.open();
  } catch (error) {
    if (error instanceof KvmError) return { available: false, reason: error.message, apiVersion: 0, capabilities: {}, maxVcpus: 0, memorySlots: 0 };
    throw error;
  }
  try {
    const capabilities: Record<string, boolean> = {};
    for (const [name, cap] of CAPABILITIES) capabilities[name] = system.checkExtension(cap) > 0;
    return {
      available: true, reason: '', apiVersion: K.KVM_API_VERSION, capabilities,
      maxVcpus: system.checkExtension(K.KVM_CAP_MAX_VCPUS) || system.checkExtension(K.KVM_CAP_NR_VCPUS),
      memorySlots: system.checkExtension(K.KVM_CAP_NR_MEMSLOTS),
    };
  } finally {
    system.close();
  }
}

export function cpuFacts(): CpuFacts {
  let flags: string[] = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line?.split(':')[1]?.trim().split(/\s+/) ?? [];
  } catch {
    // No /proc/cpuinfo: report nothing rather than guess.
  }
  return {
    hardwareVirtualization: flags.includes('vmx') ? 'vmx' : flags.includes('svm') ? 'svm' : 'none',
    underHypervisor: flags.includes('hypervisor'),
    pvm: existsSync('/sys/module/kvm_pvm'),
    kernelRelease: release(),
  };
}
