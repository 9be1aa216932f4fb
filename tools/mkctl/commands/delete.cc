// mkctl delete: free an instance and everything it holds.
#include "../commands.h"
#include "json_codec.h"

namespace mkctl {

int cmd_delete(Context& ctx) {
  po::options_description desc("mkctl delete options");
  desc.add_options()("name", po::value<std::string>(), "instance to delete");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl delete NAME", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  std::string name = vm["name"].as<std::string>();

  auto store = ctx.open_state(mk::tools::StateStore::Mode::Write);
  if (!store) return ctx.fail(store.error());
  auto part = store->load();
  if (!part) return ctx.fail(part.error());
  const mk::Instance* inst = part->find(name);
  if (!inst) {
    std::string names;
    for (const auto& i : part->instances) names += (names.empty() ? "" : ", ") + i.name;
    return ctx.fail(MK_FAIL(ENOENT, "no such instance", "no instance named '%s' (instances: %s)", name.c_str(),
                            names.empty() ? "none" : names.c_str()));
  }
  if (inst->state == mk::InstanceState::Active || inst->state == mk::InstanceState::Stopping) {
    return ctx.fail(MK_FAIL(EBUSY, "instance is running", "'%s' is %s; stop it first (mkctl stop %s)",
                            name.c_str(), mk::to_string(inst->state), name.c_str()));
  }
  mk::Instance gone = *inst;
  part->remove(name);
  if (auto s = store->save(*part); !s) return ctx.fail(s.error(), "nothing was changed");
  return ctx.emit({{"deleted", mk::tools::to_json(gone)}, {"free_cpus", part->free_cpus().to_string()}},
                  "deleted '" + name + "': cpus " + gone.cpus.to_string() + " are free again\n");
}

}  // namespace mkctl
