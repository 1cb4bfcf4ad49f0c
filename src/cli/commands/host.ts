// `novm host`: what this host can do for novm: KVM and its capabilities, hardware
// virtualization, nested PVM, and whether guest user space runs under KVM (cached probe).
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('host')
    .description("report this host's KVM capabilities and whether it can run guest user space")
    .option('--refresh', 'run the user-space probe again instead of using the cached answer')
    .option('--json', 'print JSON')
    .action(async (options: { refresh?: boolean; json?: boolean }) => {
      const { cpuFacts, kvmFacts } = await import('../../host/host-facts.js');
      const { userSpaceProbe } = await import('../../host/user-space-probe.js');
      const kvm = kvmFacts();
      const cpu = cpuFacts();
      const probe = kvm.available ? await userSpaceProbe({ refresh: options.refresh === true }) : undefined;
      const engine = probe?.userSpaceWorks ? 'kvm' : 'tcg';
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ kvm, cpu, userSpaceProbe: probe, linuxEngine: engine }, null, 2)}\n`);
        return;
      }
      const lines = [
        `kernel:                 ${cpu.kernelRelease}`,
        `hardware virtualization: ${cpu.hardwareVirtualization}${cpu.underHypervisor ? ' (running under a hypervisor)' : ''}`,
        `nested PVM KVM:          ${cpu.pvm ? 'yes (guest kernel mode is emulated)' : 'no'}`,
        `/dev/kvm:                ${kvm.available ? `API ${kvm.apiVersion}, up to ${kvm.maxVcpus} vCPUs, ${kvm.memorySlots} memory slots` : kvm.reason}`,
      ];
      if (kvm.available) {
        lines.push(`capabilities:            ${Object.entries(kvm.capabilities).map(([n, ok]) => (ok ? n : `-${n}`)).join(' ')}`);
        lines.push(`guest user space:        ${probe!.userSpaceWorks ? 'runs' : 'does NOT run'} (${probe!.detail}; ${probe!.cached ? `cached ${probe!.probedAt}` : `probed in ${probe!.milliseconds} ms`})`);
      }
      lines.push(`engine for Linux guests: ${engine}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
