// The kv handler: store place and client connections (kv_handler.h).
#include "kv_handler.h"

#include <cstdio>

#include "mksdk/kv_store.h"

namespace mk::image {

using handover::KhoBlob;
using handover::KhoNode;
using handover::KhoProperty;

namespace {
constexpr const char* kPrefix = "mkernel,kv-v";
constexpr const char* kCompatible = "mkernel,kv-v1";
}  // namespace

Result<void> KvHandler::preserve(KhoBlob&) {
  if (!*ctx_.service || !*ctx_.store) {
    return MK_FAIL(EINVAL, "kv service not running", "nothing to hand over for --services=kv");
  }
  return {};
}

void KvHandler::cancel() {
  tokens_.clear();
  if (started_) {  // new side after a failed retrieve
    ctx_.service->reset();  // stops, closes the restored connections
    ctx_.store->reset();
    started_ = false;
  }
}

Result<void> KvHandler::freeze(KhoBlob& blob) {
  KvService& svc = **ctx_.service;
  svc.pause();
  auto undo = [&] {
    files_->drop(tokens_);
    tokens_.clear();
    if (auto r = svc.resume(); !r) ctx_.con->print("mk-kernel: kv: cannot resume: %s\n", r.error().to_string().c_str());
  };
  const sdk::PageRange& range = **ctx_.store;
  handover::Subsystem sub;
  sub.name = "kv";
  sub.compatible = kCompatible;
  sub.properties = {KhoProperty::u32("region", range.region), KhoProperty::u64("offset", range.offset),
                    KhoProperty::u64("bytes", range.pages * sdk::kPageSize)};
  for (auto& c : svc.connection_states()) {
    const std::uint64_t token = kConnToken | static_cast<std::uint32_t>(c.fd);
    if (c.in.size() > KvService::kMaxHandoverBytes || c.out.size() > KvService::kMaxHandoverBytes) {
      undo();
      return MK_FAIL(E2BIG, "kv: a connection has too much pending data to hand over",
                     "connection %d: %zu input / %zu output bytes (cap %zu); retry once it drained", c.fd,
                     c.in.size(), c.out.size(), KvService::kMaxHandoverBytes);
    }
    if (auto r = files_->add(c.fd, token); !r) {
      undo();
      return r.error();
    }
    tokens_.push_back(token);
    char name[32];
    std::snprintf(name, sizeof name, "conn@%x", c.fd);
    const auto* in = reinterpret_cast<const std::uint8_t*>(c.in.data());
    const auto* out = reinterpret_cast<const std::uint8_t*>(c.out.data());
    sub.children.push_back(KhoNode{name,
                                   {KhoProperty::u64("token", token),
                                    KhoProperty::bytes("in", std::span<const std::uint8_t>(in, c.in.size())),
                                    KhoProperty::bytes("out", std::span<const std::uint8_t>(out, c.out.size())),
                                    KhoProperty::u32("closing", c.closing ? 1 : 0)},
                                   {}});
  }
  blob.subsystems.push_back(std::move(sub));
  return {};
}

void KvHandler::unfreeze() {
  files_->drop(tokens_);
  tokens_.clear();
  if (auto r = (*ctx_.service)->resume(); !r) {
    ctx_.con->print("mk-kernel: kv: cannot resume after a cancelled update: %s\n", r.error().to_string().c_str());
  }
}

Result<void> KvHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub, handover::find_compatible(blob, "kv", kPrefix, 1));
  std::optional<std::uint32_t> region;
  std::optional<std::uint64_t> offset, bytes;
  for (const auto& p : sub->properties) {
    if (p.name == "region") {
      MK_TRY_ASSIGN(region, p.as_u32());
    } else if (p.name == "offset") {
      MK_TRY_ASSIGN(offset, p.as_u64());
    } else if (p.name == "bytes") {
      MK_TRY_ASSIGN(bytes, p.as_u64());
    }
  }
  const BootMemory& m0 = ctx_.tree->memory.front();
  if (!region || !offset || !bytes || *region != 0 || *offset != 0 || *bytes != m0.size) {
    return MK_FAIL(EINVAL, "handover: the kv store is not where this image keeps it",
                   "expected region 0 offset 0 bytes %llu (all of /memory@0)", static_cast<unsigned long long>(m0.size));
  }
  const sdk::PageRange range{0, 0, m0.size / sdk::kPageSize};
  bool reserved = false;
  for (const auto& a : ctx_.regions->live()) reserved |= (a == range);
  if (!reserved) {
    return MK_FAIL(EINVAL, "handover: the kv store's pages are not a preserved allocation",
                   "the memory subsystem lists no allocation region 0 offset 0 of %llu pages",
                   static_cast<unsigned long long>(range.pages));
  }
  auto store = sdk::KvStore::attach(ctx_.regions->at(range), m0.size);
  if (!store && store.error().code() == ENOENT) {
    return MK_FAIL(ENOENT, "handover: no kv store in /memory@0",
                   "the predecessor ran the kv service but the region holds no store; a successor never formats");
  }
  if (!store) return store.error();
  std::vector<KvConnState> conns;
  // Until KvService::start owns them, every early return closes the fds taken.
  struct Guard {
    std::vector<KvConnState>* v;
    ~Guard() {
      for (auto& c : *v) handover::OwnedFd drop(c.fd);
    }
  } guard{&conns};
  for (const auto& c : sub->children) {
    std::optional<std::uint64_t> token;
    std::optional<std::uint32_t> closing;
    const KhoProperty *in = nullptr, *out = nullptr;
    for (const auto& p : c.properties) {
      if (p.name == "token") {
        MK_TRY_ASSIGN(token, p.as_u64());
      } else if (p.name == "closing") {
        MK_TRY_ASSIGN(closing, p.as_u32());
      } else if (p.name == "in") {
        in = &p;
      } else if (p.name == "out") {
        out = &p;
      }
    }
    if (!token || !closing || !in || !out || (*token >> 32) != (kConnToken >> 32) ||
        in->value.size() > KvService::kMaxHandoverBytes || out->value.size() > KvService::kMaxHandoverBytes) {
      return MK_FAIL(EINVAL, "handover: bad kv connection record",
                     "/kv/%s: token, in, out, closing required; buffers at most %zu bytes", c.name.c_str(),
                     KvService::kMaxHandoverBytes);
    }
    auto fd = files_->take(*token);
    if (!fd) {
      return fd.error();
    }
    conns.push_back(KvConnState{fd->release(), std::string(in->value.begin(), in->value.end()),
                                std::string(out->value.begin(), out->value.end()), *closing != 0});
  }
  std::vector<int> listen;
  for (const auto& d : ctx_.tree->devices) {
    if (d.kind == DeviceKind::kListen && d.fd >= 0) listen.push_back(d.fd);
  }
  if (listen.empty()) {
    return MK_FAIL(ENOENT, "kv service: no listen device", "the successor's tree has no listen device with an fd");
  }
  const std::size_t nconns = conns.size();
  std::vector<KvConnState> owned = std::move(conns);
  conns.clear();  // KvService::start owns them now, even on error
  MK_TRY_ASSIGN(*ctx_.service, KvService::start(*store, listen, ctx_.tree->cpus.front().os_index, ctx_.con,
                                                std::move(owned)));
  *ctx_.store = range;
  started_ = true;
  ctx_.con->print("mk-kernel: kv: restored the store in /memory@0 (%llu keys) and %zu connections\n",
                  static_cast<unsigned long long>(store->dbsize()), nconns);
  return {};
}

Result<void> KvHandler::finish() {
  started_ = false;  // the service is this image's from here on
  tokens_.clear();
  return {};
}

}  // namespace mk::image
