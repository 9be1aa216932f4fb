// mkctl load: record (validated, hashed) the kernel image an instance boots.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <optional>
#include <utility>

#include "../commands.h"

namespace mkctl {

namespace {

// "USER[:GROUP]", names or numbers, to (uid, gid). Without GROUP: the user's
// primary group, or the uid's number when the uid has no passwd entry.
mk::Result<std::pair<uint32_t, uint32_t>> resolve_user(const std::string& spec) {
  const std::size_t colon = spec.find(':');
  const std::string user = spec.substr(0, colon);
  auto number = [](const std::string& s) -> std::optional<uint32_t> {
    if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    unsigned long v = std::stoul(s);
    if (v >= 0xffffffffUL) return std::nullopt;
    return static_cast<uint32_t>(v);
  };
  if (user.empty()) return MK_FAIL(EINVAL, "bad --user", "--user '%s': no user before ':'", spec.c_str());
  uint32_t uid = 0, gid = 0;
  if (auto n = number(user)) {
    uid = *n;
    const passwd* pw = ::getpwuid(uid);
    gid = pw ? pw->pw_gid : uid;
  } else {
    const passwd* pw = ::getpwnam(user.c_str());
    if (!pw) return MK_FAIL(EINVAL, "bad --user", "--user: no user named '%s'", user.c_str());
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (colon != std::string::npos) {
    const std::string grp_name = spec.substr(colon + 1);
    if (auto n = number(grp_name)) {
      gid = *n;
    } else {
      const struct group* gr = grp_name.empty() ? nullptr : ::getgrnam(grp_name.c_str());
      if (!gr) return MK_FAIL(EINVAL, "bad --user", "--user: no group named '%s'", grp_name.c_str());
      gid = gr->gr_gid;
    }
  }
  return std::pair{uid, gid};
}

}  // namespace

int cmd_load(Context& ctx) {
  po::options_description desc("mkctl load options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "kernel", po::value<std::string>(), "the image: an executable ELF for this architecture (e.g. mk-kernel)")(
      "cmdline", po::value<std::string>()->default_value(""),
      "the image's command line (split on blanks into argv[1..]; mk-kernel: --tick-ms=N --wait-mode=poll|adaptive|block --grace-ms=N)")(
      "init", po::value<std::vector<std::string>>()->multitoken(),
      "the tenant command started inside the instance (rest of the line after --init)")(
      "user", po::value<std::string>(),
      "run the image and its tenants as USER[:GROUP] (names or numbers; default: root)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl load NAME --kernel IMAGE [--cmdline STR] [--user USER[:GROUP]] [--init CMD...]",
                 code))
    return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  if (!vm.count("kernel")) return ctx.usage_error("missing --kernel IMAGE (mk-kernel is the default image)");
  mk::tools::rpc::LoadAction a;
  a.name = vm["name"].as<std::string>();
  a.kernel = vm["kernel"].as<std::string>();
  if (a.kernel.empty()) return ctx.usage_error("--kernel: empty path (the image file, e.g. mk-kernel)");
  if (!a.kernel.empty() && a.kernel[0] != '/') {  // the daemon has another cwd
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) a.kernel = std::string(cwd) + "/" + a.kernel;
  }
  a.cmdline = vm["cmdline"].as<std::string>();
  if (vm.count("init")) {
    for (const auto& w : vm["init"].as<std::vector<std::string>>()) a.init += (a.init.empty() ? "" : " ") + w;
  }
  if (vm.count("user")) {
    auto ids = resolve_user(vm["user"].as<std::string>());
    if (!ids) return ctx.usage_error(ids.error().message());
    a.uid = ids->first;
    a.gid = ids->second;
  }
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
