// mkctl topology: the machine as hwloc sees it.
#include "../commands.h"
#include "topology_json.h"

namespace mkctl {

int cmd_topology(Context& ctx) {
  po::options_description desc("mkctl topology options");
  ctx.add_global_options(desc);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, {}, vm, "mkctl topology [--json] [--topology FILE.xml]", code)) return code;
  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error(), "check the path, or drop --topology to read the live machine");
  boost::json::value v = mk::tools::topology_to_json(*topo);
  return ctx.emit(v.as_object(), mk::tools::topology_to_text(*topo));
}

}  // namespace mkctl
