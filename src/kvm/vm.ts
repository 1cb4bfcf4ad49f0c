// A KVM VM: memory slots, in-kernel irqchip and PIT, interrupt routing, irqfd, ioeventfd.
import * as libc from '../native/libc.js';
import * as K from './constants.js';
import { ioctlError } from './errors.js';
import { IOEVENTFD, IRQFD, IRQ_ROUTING_ENTRY_U, SIZEOF } from './layouts.js';
import type { KvmSystem } from './system.js';
import { KvmVcpu } from './vcpu.js';

export type GsiRoute =
  | { readonly gsi: number; readonly kind: 'irqchip'; readonly chip: number; readonly pin: number }
  | { readonly gsi: number; readonly kind: 'msi'; readonly address: bigint; readonly data: number };

export class KvmVm {
  constructor(readonly fd: number, readonly system: KvmSystem) {}

  private call(name: string, request: number, arg: Uint8Array | null): void {
    if (libc.ioctlPtr(this.fd, request, arg) < 0) throw ioctlError(name, libc.lastErrno());
  }

  setUserMemoryRegion(slot: number, guestAddress: number, size: number, hostAddress: bigint, flags = 0): void {
    const b = Buffer.alloc(SIZEOF.kvm_userspace_memory_region);
    b.writeUInt32LE(slot, 0);
    b.writeUInt32LE(flags, 4);
    b.writeBigUInt64LE(BigInt(guestAddress), 8);
    b.writeBigUInt64LE(BigInt(size), 16);
    b.writeBigUInt64LE(hostAddress, 24);
    this.call('KVM_SET_USER_MEMORY_REGION', K.KVM_SET_USER_MEMORY_REGION, b);
  }

  setTssAddress(address: number): void {
    if (libc.ioctlInt(this.fd, K.KVM_SET_TSS_ADDR, address) < 0) throw ioctlError('KVM_SET_TSS_ADDR', libc.lastErrno());
  }

  setIdentityMapAddress(address: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(address));
    this.call('KVM_SET_IDENTITY_MAP_ADDR', K.KVM_SET_IDENTITY_MAP_ADDR, b);
  }

  createIrqchip(): void {
    if (libc.ioctlInt(this.fd, K.KVM_CREATE_IRQCHIP, 0) < 0) throw ioctlError('KVM_CREATE_IRQCHIP', libc.lastErrno());
  }

  createPit2(): void {
    const b = Buffer.alloc(SIZEOF.kvm_pit_config);
    b.writeUInt32LE(K.KVM_PIT_SPEAKER_DUMMY, 0);
    this.call('KVM_CREATE_PIT2', K.KVM_CREATE_PIT2, b);
  }

  private readonly irqLevelBuffer = Buffer.alloc(SIZEOF.kvm_irq_level);

  /** Drives an in-kernel irqchip input (GSI) high or low. */
  irqLine(gsi: number, level: boolean): void {
    this.irqLevelBuffer.writeUInt32LE(gsi, 0);
    this.irqLevelBuffer.writeUInt32LE(level ? 1 : 0, 4);
    this.call('KVM_IRQ_LINE', K.KVM_IRQ_LINE, this.irqLevelBuffer);
  }

  /** Replaces the whole GSI routing table. */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const b = Buffer.alloc(SIZEOF.kvm_irq_routing + routes.length * SIZEOF.kvm_irq_routing_entry);
    b.writeUInt32LE(routes.length, 0);
    routes.forEach((r, i) => {
      const o = SIZEOF.kvm_irq_routing + i * SIZEOF.kvm_irq_routing_entry;
      b.writeUInt32LE(r.gsi, o);
      const u = o + IRQ_ROUTING_ENTRY_U;
      if (r.kind === 'irqchip') {
        b.writeUInt32LE(K.KVM_IRQ_ROUTING_IRQCHIP, o + 4);
        b.writeUInt32LE(r.chip, u);
        b.writeUInt32LE(r.pin, u + 4);
      } else {
        b.writeUInt32LE(K.KVM_IRQ_ROUTING_MSI, o + 4);
        b.writeUInt32LE(Number(r.address & 0xffffffffn), u);
        b.writeUInt32LE(Number(r.address >> 32n), u + 4);
        b.writeUInt32LE(r.data >>> 0, u + 8);
      }
    });
    this.call('KVM_SET_GSI_ROUTING', K.KVM_SET_GSI_ROUTING, b);
  }

  /** Makes a write to `eventFd` raise `gsi` (and, with a resample fd, a level-triggered line). */
  irqfd(eventFd: number, gsi: number, options: { deassign?: boolean; resampleFd?: number } = {}): void {
    const b = Buffer.alloc(SIZEOF.kvm_irqfd);
    b.writeUInt32LE(eventFd, IRQFD.fd);
    b.writeUInt32LE(gsi, IRQFD.gsi);
    let flags = options.deassign ? K.KVM_IRQFD_FLAG_DEASSIGN : 0;
    if (options.resampleFd !== undefined) {
      flags |= 2; // KVM_IRQFD_FLAG_RESAMPLE
      b.writeUInt32LE(options.resampleFd, IRQFD.resamplefd);
    }
    b.writeUInt32LE(flags, IRQFD.flags);
    this.call('KVM_IRQFD', K.KVM_IRQFD, b);
  }

  /** Makes guest writes to an address signal `eventFd` in the kernel, without an exit. */
  ioeventfd(eventFd: number, address: number, length: number, options: { pio?: boolean; datamatch?: bigint; deassign?: boolean } = {}): void {
    const b = Buffer.alloc(SIZEOF.kvm_ioeventfd);
    let flags = 0;
    if (options.pio) flags |= K.KVM_IOEVENTFD_FLAG_PIO;
    if (options.datamatch !== undefined) {
      flags |= K.KVM_IOEVENTFD_FLAG_DATAMATCH;
      b.writeBigUInt64LE(options.datamatch, IOEVENTFD.datamatch);
    }
    if (options.deassign) flags |= K.KVM_IOEVENTFD_FLAG_DEASSIGN;
    b.writeBigUInt64LE(BigInt(address), IOEVENTFD.addr);
    b.writeUInt32LE(length, IOEVENTFD.len);
    b.writeInt32LE(eventFd, IOEVENTFD.fd);
    b.writeUInt32LE(flags, IOEVENTFD.flags);
    this.call('KVM_IOEVENTFD', K.KVM_IOEVENTFD, b);
  }

  signalMsi(address: bigint, data: number): void {
    const b = Buffer.alloc(SIZEOF.kvm_msi);
    b.writeUInt32LE(Number(address & 0xffffffffn), 0);
    b.writeUInt32LE(Number(address >> 32n), 4);
    b.writeUInt32LE(data >>> 0, 8);
    if (libc.ioctlPtr(this.fd, K.KVM_SIGNAL_MSI, b) < 0) throw ioctlError('KVM_SIGNAL_MSI', libc.lastErrno());
  }

  createVcpu(id: number): KvmVcpu {
    const fd = libc.ioctlInt(this.fd, K.KVM_CREATE_VCPU, id);
    if (fd < 0) throw ioctlError(`KVM_CREATE_VCPU ${id}`, libc.lastErrno());
    return new KvmVcpu(fd, id, this.system.vcpuMmapSize());
  }

  close(): void {
    libc.close(this.fd);
  }
}
