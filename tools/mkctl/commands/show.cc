// mkctl show: the pool and every instance, or one instance (--dtb: its boot
// tree); --picture: the partition drawn over the topology (mkernel/picture.h).
#include <fcntl.h>
#include <unistd.h>

#include "../commands.h"
#include "json_codec.h"
#include "mk/boot_tree.h"
#include "mkernel/manifest.h"
#include "mkernel/picture.h"

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

// --dtb: the boot tree is built here, from the instance the answer carries and
// this machine's topology, because the file belongs to the caller (its cwd,
// its permissions), not to mkerneld.
int write_dtb(Context& ctx, mk::tools::rpc::Response& r, const std::string& path) {
  auto inst = mk::tools::instance_from_json(r.result["instance"]);
  if (!inst) return ctx.fail(inst.error());
  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto tree = mk::make_boot_tree(*topo, *inst, {});
  if (!tree) return ctx.fail(tree.error());
  auto blob = mk::emit_boot_tree(*tree);
  if (!blob) return ctx.fail(blob.error());
  if (auto w = write_file(path, *blob); !w) return ctx.fail(w.error());
  r.result["dtb"] = boost::json::object{{"path", path}, {"bytes", blob->size()}};
  r.text += "boot tree: " + path + " (" + std::to_string(blob->size()) + " bytes)\n";
  return ctx.finish(r);
}

// --picture: drawn here, like --dtb, from the partition the answer carries and
// this machine's (or the --topology file's) topology; the file is the caller's.
int write_picture(Context& ctx, mk::tools::rpc::Response& r, const std::string& path) {
  mk::Partition part;
  const boost::json::value* pool = r.result.if_contains("pool");
  if (pool && !pool->is_null()) {
    auto p = mk::tools::pool_from_json(*pool);
    if (!p) return ctx.fail(p.error());
    part.has_pool = true;
    part.pool = std::move(*p);
  }
  if (const boost::json::value* insts = r.result.if_contains("instances"); insts && insts->is_array()) {
    for (const auto& v : insts->get_array()) {
      auto inst = mk::tools::instance_from_json(v);
      if (!inst) return ctx.fail(inst.error());
      part.instances.push_back(std::move(*inst));
    }
  }
  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto pic = mk::draw_partition(*topo, part, path);
  if (!pic) return ctx.fail(pic.error(), "nothing was written");
  boost::json::array key;
  std::string text = "picture: " + path + " (" + mk::to_string(pic->format) + ", " + std::to_string(pic->bytes) +
                     " bytes)\n";
  for (const auto& e : pic->key.instances) {
    boost::json::array nodes;
    for (const auto& m : e.memory) nodes.push_back(m.node);
    key.push_back(boost::json::object{{"name", e.name},
                                      {"colour", e.colour},
                                      {"kind", e.kind},
                                      {"cpus", e.cpus.to_string()},
                                      {"nodes", std::move(nodes)}});
    text += "  " + e.name + ": " + e.colour + ", cpus " + e.cpus.to_string() + (e.kind.empty() ? "" : " (" + e.kind + ")") + "\n";
  }
  r.result["picture"] = boost::json::object{{"path", path},
                                            {"format", mk::to_string(pic->format)},
                                            {"bytes", pic->bytes},
                                            {"instances", std::move(key)},
                                            {"free_cpus", pic->key.free_cpus.to_string()},
                                            {"host_cpus", pic->key.host_cpus.to_string()}};
  r.text += text;
  return ctx.finish(r);
}

}  // namespace

int cmd_show(Context& ctx) {
  po::options_description desc("mkctl show options");
  desc.add_options()
      ("name", po::value<std::string>(), "instance to show (default: all)")
      ("dtb", po::value<std::string>(), "with NAME: write the instance's boot tree (FDT) to FILE")
      ("picture", po::value<std::string>(),
       "without NAME: draw the topology with each instance's CPUs, memory node and devices coloured and "
       "labelled to FILE.svg or FILE.png (needs lstopo from hwloc-nox; .png also rsvg-convert from librsvg2-bin)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl show [NAME] [--dtb FILE] | mkctl show --picture FILE.png|FILE.svg", code))
    return code;
  if (vm.count("dtb") && !vm.count("name")) return ctx.usage_error("--dtb needs an instance NAME");
  if (vm.count("picture") && vm.count("name"))
    return ctx.usage_error("--picture draws the whole partition; drop the instance NAME");
  if (vm.count("picture")) {
    if (auto f = mk::picture_format(vm["picture"].as<std::string>()); !f) return ctx.usage_error(f.error().to_string());
  }

  mk::tools::rpc::ShowAction action;
  if (vm.count("name")) action.name = vm["name"].as<std::string>();
  mk::tools::rpc::Response r = ctx.execute(action);
  if (r.ok && vm.count("picture")) return write_picture(ctx, r, vm["picture"].as<std::string>());
  if (!r.ok || !vm.count("dtb")) return ctx.finish(r);
  return write_dtb(ctx, r, vm["dtb"].as<std::string>());
}

}  // namespace mkctl
