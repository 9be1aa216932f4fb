// A PU of the Topology as the boot tree and CpuMsg describe it (boot_cpu.h).
#include "mkernel/boot_cpu.h"

namespace mk {

std::optional<BootCpu> boot_cpu_of(const Topology& topo, uint32_t cpu) {
  const Pu* pu = topo.find_pu(cpu);
  if (!pu) return std::nullopt;
  BootCpu b;
  b.os_index = cpu;
  b.core = topo.cores.at(pu->core).os_index;
  b.package = pu->package;
  b.numa = pu->numa >= 0 ? static_cast<uint32_t>(pu->numa) : 0;
  b.kind = pu->kind;
  b.efficiency = pu->kind >= 0 ? topo.kinds.at(static_cast<std::size_t>(pu->kind)).efficiency : -1;
  return b;
}

}  // namespace mk
