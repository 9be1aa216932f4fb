// The tenants handler: reaper pipe and tenant list (tenants_handler.h).
#include "tenants_handler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

namespace mk::image {

using handover::KhoBlob;
using handover::KhoNode;
using handover::KhoProperty;
using handover::OwnedFd;

namespace {
constexpr const char* kPrefix = "mkernel,tenants-v";
constexpr const char* kCompatible = "mkernel,tenants-v1";
}  // namespace

Result<void> TenantsHandler::preserve(KhoBlob&) {
  bool own_children = false;
  for (const auto& t : tenants_->running_tenants()) own_children |= !t.adopted;
  if (!read_end_.valid() && own_children) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe2 for the reaper pipe");
    read_end_.reset(p[0]);
    write_end_.reset(p[1]);
    created_ = true;
  }
  if (read_end_.valid()) {
    if (auto r = files_->add(read_end_.get(), kReaperToken); !r) {
      cancel();
      return r.error();
    }
    preserved_ = true;
  }
  return {};
}

void TenantsHandler::cancel() {
  frozen_ = false;
  if (preserved_) files_->drop({kReaperToken});  // the next prepare adds it again
  preserved_ = false;
  if (created_) {
    read_end_.reset();
    write_end_.reset();
    created_ = false;
  }
  if (retrieving_) {  // new side after a failed retrieve: forget what was restored
    (void)tenants_->set_reaper_fd(-1);
    read_end_.reset();
    retrieving_ = false;
  }
}

void TenantsHandler::handed_over() {
  read_end_.reset();
  preserved_ = false;
  frozen_ = false;
  created_ = false;  // the write end is no longer this update's to close
  retrieving_ = false;
}

Result<void> TenantsHandler::freeze(KhoBlob& blob) {
  handover::Subsystem sub;
  sub.name = "tenants";
  sub.compatible = kCompatible;
  sub.properties.push_back(KhoProperty::u32("reaper", preserved_ ? 1 : 0));
  for (const auto& t : tenants_->running_tenants()) {
    char name[32];
    std::snprintf(name, sizeof name, "tenant@%x", t.index);
    sub.children.push_back(KhoNode{name,
                                   {KhoProperty::u32("pid", static_cast<std::uint32_t>(t.pid)),
                                    KhoProperty::u32("pgid", static_cast<std::uint32_t>(t.pgid)),
                                    KhoProperty::u32("index", t.index), KhoProperty::string("command", t.command),
                                    KhoProperty::u32("reaper", preserved_ ? 1 : 0)},
                                   {}});
  }
  blob.subsystems.push_back(std::move(sub));
  frozen_ = true;
  return {};
}

Result<void> TenantsHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub, handover::find_compatible(blob, "tenants", kPrefix, 1));
  retrieving_ = true;
  std::uint32_t reaper = 0;
  for (const auto& p : sub->properties) {
    if (p.name == "reaper") {
      MK_TRY_ASSIGN(reaper, p.as_u32());
    }
  }
  if (reaper) {
    if (!files_->has(kReaperToken)) {
      return MK_FAIL(EINVAL, "handover: tenants say reaper but no reaper pipe was handed over",
                     "token 0x%llx missing from the session", static_cast<unsigned long long>(kReaperToken));
    }
    MK_TRY_ASSIGN(read_end_, files_->take(kReaperToken));
    MK_TRY(tenants_->set_reaper_fd(read_end_.get()));
  }
  for (const auto& c : sub->children) {
    std::optional<std::uint32_t> pid, pgid, index, via_reaper;
    std::optional<std::string> command;
    for (const auto& p : c.properties) {
      if (p.name == "pid") {
        MK_TRY_ASSIGN(pid, p.as_u32());
      } else if (p.name == "pgid") {
        MK_TRY_ASSIGN(pgid, p.as_u32());
      } else if (p.name == "index") {
        MK_TRY_ASSIGN(index, p.as_u32());
      } else if (p.name == "command") {
        MK_TRY_ASSIGN(command, p.as_string());
      } else if (p.name == "reaper") {
        MK_TRY_ASSIGN(via_reaper, p.as_u32());
      }
    }
    if (!pid || !pgid || !index || !command || !via_reaper) {
      return MK_FAIL(EINVAL, "handover: bad tenant record", "/tenants/%s lacks pid, pgid, index, command or reaper",
                     c.name.c_str());
    }
    if (!*via_reaper || !reaper) {
      return MK_FAIL(EINVAL, "handover: a tenant's exit would not reach this image",
                     "/tenants/%s (pid %u) is not reaped through the reaper pipe", c.name.c_str(), *pid);
    }
    MK_TRY(tenants_->adopt(static_cast<pid_t>(*pid), static_cast<pid_t>(*pgid), *index, *command));
  }
  return {};
}

}  // namespace mk::image
