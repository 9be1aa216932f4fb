// mkctl init: set the pool (what the host sets aside for instances).
#include <sstream>

#include "../commands.h"
#include "mkernel/pool.h"

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
    if (m.find(',') != std::string::npos)
      return ctx.usage_error("--memory: '" + m + "': one SIZE[@NODE] per --memory (repeat the option: --memory 1G@0 --memory 1G@1)");
    auto s = mk::MemorySpec::parse(m);
    if (!s) return ctx.usage_error(std::string("--memory: ") + s.error().message());
    req.memory.push_back(*s);
  }
  req.devices = split_commas(devices);

  return ctx.finish(ctx.execute(mk::tools::rpc::InitAction{std::move(req)}));
}

}  // namespace mkctl
