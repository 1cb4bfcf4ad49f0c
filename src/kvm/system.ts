// The KVM system handle (/dev/kvm): API version, capabilities, supported CPUID, VM creation.
import * as libc from '../native/libc.js';
import * as K from './constants.js';
import { KvmError, ioctlError } from './errors.js';
import { SIZEOF } from './layouts.js';
import { decodeCpuidEntries, type CpuidEntry } from './cpuid-codec.js';
import { KvmVm } from './vm.js';

export type { CpuidEntry } from './cpuid-codec.js';

const MAX_CPUID_ENTRIES = 256;

export class KvmSystem {
  private constructor(readonly fd: number) {}

  /** Opens /dev/kvm, with a clear error when it is missing or not accessible. */
  static open(path = '/dev/kvm'): KvmSystem {
    const fd = libc.open(path, libc.O_RDWR | libc.O_CLOEXEC, 0);
    if (fd < 0) {
      const errno = libc.lastErrno();
      const why = errno === libc.ENOENT ? 'does not exist (no KVM on this host, or the kvm module is not loaded)'
        : errno === libc.EACCES ? 'is not accessible (run as root or join the kvm group)'
        : `cannot be opened: ${libc.errnoName(errno)}`;
      throw new KvmError('unavailable', `${path} ${why}`, errno);
    }
    const system = new KvmSystem(fd);
    const version = libc.ioctlInt(fd, K.KVM_GET_API_VERSION, 0);
    if (version !== K.KVM_API_VERSION) {
      libc.close(fd);
      throw new KvmError('api-version', `${path}: KVM API version ${version}, novm needs ${K.KVM_API_VERSION}`);
    }
    return system;
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific positive value. */
  checkExtension(capability: number): number {
    const r = libc.ioctlInt(this.fd, K.KVM_CHECK_EXTENSION, capability);
    return r < 0 ? 0 : r;
  }

  requireExtension(capability: number, name: string): number {
    const r = this.checkExtension(capability);
    if (r <= 0) throw new KvmError('capability-missing', `this host's KVM lacks ${name}, which novm needs`);
    return r;
  }

  vcpuMmapSize(): number {
    const r = libc.ioctlInt(this.fd, K.KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r < 0) throw ioctlError('KVM_GET_VCPU_MMAP_SIZE', libc.lastErrno());
    return r;
  }

  supportedCpuid(): CpuidEntry[] {
    const buffer = Buffer.alloc(SIZEOF.kvm_cpuid2 + MAX_CPUID_ENTRIES * SIZEOF.kvm_cpuid_entry2);
    buffer.writeUInt32LE(MAX_CPUID_ENTRIES, 0);
    if (libc.ioctlPtr(this.fd, K.KVM_GET_SUPPORTED_CPUID, buffer) < 0) throw ioctlError('KVM_GET_SUPPORTED_CPUID', libc.lastErrno());
    return decodeCpuidEntries(buffer);
  }

  createVm(): KvmVm {
    const fd = libc.ioctlInt(this.fd, K.KVM_CREATE_VM, 0);
    if (fd < 0) throw ioctlError('KVM_CREATE_VM', libc.lastErrno());
    return new KvmVm(fd, this);
  }

  close(): void {
    libc.close(this.fd);
  }
}
