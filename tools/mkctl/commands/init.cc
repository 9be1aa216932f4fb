// mkctl init: set the pool (what the host sets aside for instances).
#include <sstream>

#include "../commands.h"
#include "json_codec.h"
#include "mk/units.h"
#include "mkernel/pool.h"
#include "mkernel/sysroot.h"

namespace mkctl {

namespace {

std::vector<std::string> split_commas(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in) {
    std::stringstream ss(s);
    for (std::string part; std::getline(ss, part, ',');)
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

}  // namespace

int cmd_init(Context& ctx) {
  po::options_description desc("mkctl init options");
  std::vector<std::string> memory, devices;
  desc.add_options()
      ("cpus", po::value<std::string>(), "CPUs of the pool, e.g. 1-7 (default: every CPU but the first)")
      ("memory", po::value(&memory)->composing(),
       "SIZE or SIZE@NODE, repeatable (default: 50% of each node's free memory)")
      ("devices", po::value(&devices)->composing(), "NAME[,NAME...] host devices instances may take");
  ctx.add_global_options(desc);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, {}, vm, "mkctl init [--cpus LIST] [--memory SIZE[@NODE]]... [--devices NAME,...]", code))
    return code;

  mk::PoolRequest req;
  if (vm.count("cpus")) {
    auto c = mk::CpuSet::parse(vm["cpus"].as<std::string>());
    if (!c) return ctx.usage_error(std::string("--cpus: ") + c.error().message());
    req.cpus = *c;
  }
  for (const auto& m : memory) {
    auto s = mk::MemorySpec::parse(m);
    if (!s) return ctx.usage_error(std::string("--memory: ") + s.error().message());
    req.memory.push_back(*s);
  }
  req.devices = split_commas(devices);

  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto store = ctx.open_state(mk::tools::StateStore::Mode::Write);
  if (!store) return ctx.fail(store.error());
  auto part = store->load();
  if (!part) return ctx.fail(part.error());
  auto avail = mk::available_memory(*topo, mk::SysRoot::from_env());
  if (!avail) return ctx.fail(avail.error());
  auto d = mk::make_pool(*topo, req, *avail, part->instances);
  if (!d) return ctx.fail(d.error(), "the pool was left unchanged");
  part->pool = d->pool;
  part->has_pool = true;
  if (auto s = store->save(*part); !s) return ctx.fail(s.error(), "the pool was left unchanged");

  std::string text = "pool: cpus " + d->pool.cpus.to_string() + ", memory " +
                     mk::format_size(d->pool.total_memory());
  for (const auto& r : d->pool.memory) text += " [node " + std::to_string(r.node) + ": " + mk::format_size(r.bytes) + "]";
  if (!d->pool.devices.empty()) {
    text += ", devices";
    for (const auto& dev : d->pool.devices) text += " " + dev;
  }
  mk::CpuSet host = topo->all_pus() - d->pool.cpus;
  text += "\nhost keeps: cpus " + (host.empty() ? std::string("none") : host.to_string()) + "\n";
  return ctx.emit({{"pool", mk::tools::to_json(d->pool)},
                   {"host_cpus", host.to_string()},
                   {"warnings", mk::tools::warnings_to_json(d->warnings)}},
                  warning_lines(d->warnings) + text);
}

}  // namespace mkctl
