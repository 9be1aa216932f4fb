// mkctl create: allocate an instance, validated; a refused create changes nothing.
#include "../commands.h"
#include "json_codec.h"
#include "mk/units.h"
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
    auto s = mk::MemorySpec::parse(m);
    if (!s) return ctx.usage_error(std::string("--memory: ") + s.error().message());
    req.memory.push_back(*s);
  }
  for (const auto& d : devices) {
    auto s = mk::DeviceSpec::parse(d);
    if (!s) return ctx.usage_error(std::string("--device: ") + s.error().message());
    req.devices.push_back(*s);
  }

  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto store = ctx.open_state(mk::tools::StateStore::Mode::Write);
  if (!store) return ctx.fail(store.error());
  auto part = store->load();
  if (!part) return ctx.fail(part.error());
  auto plan = mk::plan_create(*topo, *part, req);
  if (!plan) return ctx.fail(plan.error(), "nothing was changed");
  part->add(plan->instance);
  if (auto s = store->save(*part); !s) return ctx.fail(s.error(), "nothing was changed");

  const mk::Instance& i = plan->instance;
  std::string text = "created '" + i.name + "' (id " + std::to_string(i.id) + "): cpus " + i.cpus.to_string() +
                     ", memory " + mk::format_size(i.memory_bytes());
  for (const auto& d : i.devices) text += ", " + d.to_string();
  text += "\n";
  auto doc = mk::tools::to_json(i);
  return ctx.emit({{"instance", std::move(doc)}, {"warnings", mk::tools::warnings_to_json(plan->warnings)}},
                  warning_lines(plan->warnings) + text);
}

}  // namespace mkctl
