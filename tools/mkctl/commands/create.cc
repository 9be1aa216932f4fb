// mkctl create: allocate an instance, validated; a refused create changes nothing.
#include "../commands.h"
#include "mkernel/partition.h"

namespace mkctl {

int cmd_create(Context& ctx) {
  po::options_description desc("mkctl create options");
  std::vector<std::string> memory, devices;
  desc.add_options()
      ("name", po::value<std::string>(), "instance name (1-63 of [A-Za-z0-9_.-])")
      ("cpus", po::value<std::string>(), "exclusive CPUs, e.g. 4-7")
      ("cpu-count", po::value<uint32_t>(), "number of CPUs placed by mkernel (compact by default)")
      ("kind", po::value<std::string>(), "with --cpu-count: performance, efficiency or a kind index")
      ("numa", po::value<uint32_t>(), "with --cpu-count: NUMA node to place on")
      ("spread", po::bool_switch(), "with --cpu-count: one CPU per core, across caches and nodes")
      ("memory", po::value(&memory)->composing(), "SIZE or SIZE@NODE, repeatable (required)")
      ("device", po::value(&devices)->composing(),
       "net:IFNAME | block:NAME | file:PATH[:ro] | listen:ADDR:PORT, repeatable")
      ("id", po::value<uint32_t>(), "instance id 1..511 (default: lowest free)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  const char* usage =
      "mkctl create NAME (--cpus LIST | --cpu-count N [--kind KIND] [--numa N] [--spread])\n"
      "                  --memory SIZE[@NODE]... [--device SPEC]... [--id N]";
  if (!ctx.parse(desc, pos, vm, usage, code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  if (vm.count("cpus") == vm.count("cpu-count"))
    return ctx.usage_error("give exactly one of --cpus LIST and --cpu-count N");
  if (memory.empty()) return ctx.usage_error("missing --memory SIZE (e.g. --memory 512M)");

  mk::CreateRequest req;
  req.name = vm["name"].as<std::string>();
  if (vm.count("cpus")) {
    auto c = mk::CpuSet::parse(vm["cpus"].as<std::string>());
    if (!c) return ctx.usage_error(std::string("--cpus: ") + c.error().message());
    req.cpus = *c;
  } else {
    req.cpu_count = vm["cpu-count"].as<uint32_t>();
    if (req.cpu_count == 0) return ctx.usage_error("--cpu-count must be at least 1");
  }
  if (vm.count("kind")) {
    auto k = mk::KindSelector::parse(vm["kind"].as<std::string>());
    if (!k) return ctx.usage_error(std::string("--kind: ") + k.error().message());
    req.kind = *k;
  }
  if (vm.count("numa")) req.numa = vm["numa"].as<uint32_t>();
  req.spread = vm["spread"].as<bool>();
  if (req.cpus && (req.kind || req.numa || req.spread))
    return ctx.usage_error("--kind, --numa and --spread go with --cpu-count, not --cpus");
  if (vm.count("id")) req.id = vm["id"].as<uint32_t>();
  for (const auto& m : memory) {
    if (m.find(',') != std::string::npos)
      return ctx.usage_error("--memory: '" + m + "': one SIZE[@NODE] per --memory (repeat the option: --memory 1G@0 --memory 1G@1)");
    auto s = mk::MemorySpec::parse(m);
    if (!s) return ctx.usage_error(std::string("--memory: ") + s.error().message());
    req.memory.push_back(*s);
  }
  for (const auto& d : devices) {
    auto s = mk::DeviceSpec::parse(d);
    if (!s) return ctx.usage_error(std::string("--device: ") + s.error().message());
    req.devices.push_back(*s);
  }

  return ctx.finish(ctx.execute(mk::tools::rpc::CreateAction{std::move(req)}));
}

}  // namespace mkctl
