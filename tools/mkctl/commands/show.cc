// mkctl show: the pool and every instance, or one instance (--dtb: its boot tree).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "../commands.h"
#include "json_codec.h"
#include "mk/boot_tree.h"
#include "mk/units.h"
#include "mkernel/manifest.h"

namespace mkctl {

namespace {

mk::Result<void> write_file(const std::string& path, const std::vector<uint8_t>& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    return mk::Error(e, "cannot write file").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return mk::Error(e, "cannot write file").set_detail("%s: %s", path.c_str(), strerror(e));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) return mk::errno_error("cannot write file");
  return mk::ok();
}

std::string memory_text(const mk::Instance& i) {
  std::string mem;
  for (const auto& r : i.memory) mem += (mem.empty() ? "" : " + ") + mk::format_size(r.bytes) + "@" + std::to_string(r.node);
  return mem.empty() ? "none" : mem;
}

}  // namespace

int cmd_show(Context& ctx) {
  po::options_description desc("mkctl show options");
  desc.add_options()
      ("name", po::value<std::string>(), "instance to show (default: all)")
      ("dtb", po::value<std::string>(), "with NAME: write the instance's boot tree (FDT) to FILE");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl show [NAME] [--dtb FILE]", code)) return code;
  if (vm.count("dtb") && !vm.count("name")) return ctx.usage_error("--dtb needs an instance NAME");

  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto store = ctx.open_state(mk::tools::StateStore::Mode::Read);
  if (!store) return ctx.fail(store.error());
  auto part = store->load();
  if (!part) return ctx.fail(part.error());

  if (vm.count("name")) {
    std::string name = vm["name"].as<std::string>();
    const mk::Instance* inst = part->find(name);
    if (!inst) {
      std::string names;
      for (const auto& i : part->instances) names += (names.empty() ? "" : ", ") + i.name;
      return ctx.fail(MK_FAIL(ENOENT, "no such instance", "no instance named '%s' (instances: %s)", name.c_str(),
                              names.empty() ? "none" : names.c_str()));
    }
    auto warnings = mk::placement_warnings(*topo, *part, *inst);
    boost::json::object doc{{"instance", mk::tools::to_json(*inst)},
                            {"warnings", mk::tools::warnings_to_json(warnings)}};
    std::string text = "instance '" + inst->name + "' (id " + std::to_string(inst->id) + "), " +
                       mk::to_string(inst->state) + "\n  cpus:    " + inst->cpus.to_string() +
                       "\n  memory:  " + memory_text(*inst) + "\n  devices: console";
    for (const auto& d : inst->devices) text += ", " + d.to_string();
    text += "\n" + warning_lines(warnings);
    if (vm.count("dtb")) {
      auto tree = mk::make_boot_tree(*topo, *inst, {});
      if (!tree) return ctx.fail(tree.error());
      auto blob = mk::emit_boot_tree(*tree);
      if (!blob) return ctx.fail(blob.error());
      std::string path = vm["dtb"].as<std::string>();
      if (auto w = write_file(path, *blob); !w) return ctx.fail(w.error());
      doc["dtb"] = boost::json::object{{"path", path}, {"bytes", blob->size()}};
      text += "boot tree: " + path + " (" + std::to_string(blob->size()) + " bytes)\n";
    }
    return ctx.emit(doc, text);
  }

  boost::json::array insts;
  for (const auto& i : part->instances) {
    auto o = mk::tools::to_json(i);
    o["warnings"] = mk::tools::warnings_to_json(mk::placement_warnings(*topo, *part, i));
    insts.push_back(std::move(o));
  }
  boost::json::object doc{{"topology", ctx.topology_source()}, {"instances", std::move(insts)}};
  std::string text;
  if (!part->has_pool) {
    doc["pool"] = nullptr;
    text = "no pool set (mkctl init sets one)\n";
    return ctx.emit(doc, text);
  }
  doc["pool"] = mk::tools::to_json(part->pool);
  doc["free_cpus"] = part->free_cpus().to_string();
  mk::CpuSet host = topo->all_pus() - part->pool.cpus;
  doc["host_cpus"] = host.to_string();
  text = "pool: cpus " + part->pool.cpus.to_string() + ", memory " + mk::format_size(part->pool.total_memory()) +
         "; free cpus " + (part->free_cpus().empty() ? std::string("none") : part->free_cpus().to_string()) +
         "; host cpus " + (host.empty() ? std::string("none") : host.to_string()) + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-4s %-16s %-9s %-20s %-24s %s\n", "ID", "NAME", "STATE", "CPUS", "MEMORY",
                "DEVICES");
  text += line;
  for (const auto& i : part->instances) {
    std::string devs = "console";
    for (const auto& d : i.devices) devs += "," + d.to_string();
    std::snprintf(line, sizeof line, "%-4u %-16s %-9s %-20s %-24s %s\n", i.id, i.name.c_str(), mk::to_string(i.state),
                  i.cpus.to_string().c_str(), memory_text(i).c_str(), devs.c_str());
    text += line;
  }
  return ctx.emit(doc, text);
}

}  // namespace mkctl
