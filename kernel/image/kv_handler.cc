// The kv handler: store place and client connections (kv_handler.h).
#include "kv_handler.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "mksdk/kv_store.h"

namespace mk::image {

using handover::KhoBlob;
using handover::KhoNode;
using handover::KhoProperty;

namespace {

constexpr const char* kPrefix = "mkernel,kv-v";
constexpr const char* kCompatible = "mkernel,kv-v2";
constexpr std::uint32_t kVersion = 2;

std::uint64_t token_of(std::uint32_t id) { return kConnToken | id; }

std::vector<std::uint8_t> encode_ids(const std::vector<std::uint32_t>& ids) {
  std::vector<std::uint8_t> out(ids.size() * 4);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out[4 * i] = static_cast<std::uint8_t>(ids[i] >> 24);
    out[4 * i + 1] = static_cast<std::uint8_t>(ids[i] >> 16);
    out[4 * i + 2] = static_cast<std::uint8_t>(ids[i] >> 8);
    out[4 * i + 3] = static_cast<std::uint8_t>(ids[i]);
  }
  return out;
}

// One conn@ID record of the kv subsystem.
struct ConnRecord {
  std::uint32_t id = 0;
  std::string in, out;
  bool closing = false;
};

Result<std::vector<ConnRecord>> parse_records(const handover::Subsystem& sub) {
  std::vector<ConnRecord> out;
  for (const auto& c : sub.children) {
    std::optional<std::uint32_t> id, closing;
    const KhoProperty *in = nullptr, *o = nullptr;
    for (const auto& p : c.properties) {
      if (p.name == "id") {
        MK_TRY_ASSIGN(id, p.as_u32());
      } else if (p.name == "closing") {
        MK_TRY_ASSIGN(closing, p.as_u32());
      } else if (p.name == "in") {
        in = &p;
      } else if (p.name == "out") {
        o = &p;
      }
    }
    if (!id || !closing || !in || !o || in->value.size() > KvService::kMaxHandoverBytes ||
        o->value.size() > KvService::kMaxHandoverBytes) {
      return MK_FAIL(EINVAL, "handover: bad kv connection record",
                     "/kv/%s: id, in, out, closing required; buffers at most %zu bytes", c.name.c_str(),
                     KvService::kMaxHandoverBytes);
    }
    out.push_back(ConnRecord{*id, std::string(in->value.begin(), in->value.end()),
                             std::string(o->value.begin(), o->value.end()), *closing != 0});
  }
  return out;
}

}  // namespace

std::vector<int> KvHandler::listen_fds() const {
  std::vector<int> listen;
  for (const auto& d : ctx_.tree->devices) {
    if (d.kind == DeviceKind::kListen && d.fd >= 0) listen.push_back(d.fd);
  }
  return listen;
}

Result<void> KvHandler::preserve(KhoBlob&) {
  if (!*ctx_.service || !*ctx_.store) {
    return MK_FAIL(EINVAL, "kv service not running", "nothing to hand over for --services=kv");
  }
  // A short pause to list the connections consistently: dups taken while
  // paused name the right sockets (a closed fd's number may be reused the
  // moment the service runs again); the costly per-fd checks run after.
  KvService& svc = **ctx_.service;
  svc.pause();
  std::vector<std::pair<std::uint32_t, int>> dups;
  const KvService::Snapshot snap = svc.snapshot();
  for (std::size_t i = 0; i < snap.ids.size(); ++i) {
    const int d = ::fcntl(snap.fds[i], F_DUPFD_CLOEXEC, 0);
    if (d >= 0) dups.emplace_back(snap.ids[i], d);
  }
  if (auto r = svc.resume(); !r) {
    for (auto& [id, d] : dups) ::close(d);
    return r.error();
  }
  precopied_.clear();
  for (auto& [id, d] : dups) {
    // A connection that cannot be preserved now (e.g. reset meanwhile) is
    // left to the freeze, which refuses it if it is still there.
    if (files_->add(d, token_of(id))) precopied_.push_back(id);
    ::close(d);
  }
  std::sort(precopied_.begin(), precopied_.end());
  return {};
}

void KvHandler::cancel() {
  added_.clear();
  precopied_.clear();
  staged_.reset();  // new side: closes the staged connections (no shutdown)
  staged_ids_.clear();
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
    files_->drop(added_);
    added_.clear();
    if (auto r = svc.resume(); !r) ctx_.con->print("mk-kernel: kv: cannot resume: %s\n", r.error().to_string().c_str());
  };
  const sdk::PageRange& range = **ctx_.store;
  const KvService::Snapshot snap = svc.snapshot();
  handover::Subsystem sub;
  sub.name = "kv";
  sub.compatible = kCompatible;
  for (const auto& c : snap.pending) {
    if (c.in.size() > KvService::kMaxHandoverBytes || c.out.size() > KvService::kMaxHandoverBytes) {
      undo();
      return MK_FAIL(E2BIG, "kv: a connection has too much pending data to hand over",
                     "connection %u (fd %d): %zu input / %zu output bytes (cap %zu); retry once it drained", c.id,
                     c.fd, c.in.size(), c.out.size(), KvService::kMaxHandoverBytes);
    }
  }
  std::vector<std::uint32_t> live;  // what the successor gets (`ids`)
  std::vector<std::uint32_t> left_out;  // sorted: lost their peer, not handed over
  live.reserve(snap.ids.size());
  for (std::size_t i = 0; i < snap.ids.size(); ++i) {
    const std::uint32_t id = snap.ids[i];
    // Accepted since prepare (or not preservable then): into the session now.
    if (!std::binary_search(precopied_.begin(), precopied_.end(), id)) {
      if (auto r = files_->add(snap.fds[i], token_of(id)); !r) {
        if (r.error().code() == ENOENT) {
          // A TCP connection that lost its peer (reset: nothing more can be
          // read from or written to it): nothing to hand over; it stays
          // here and ends with this image, or after a cancel when the
          // service reads the reset.
          left_out.push_back(id);
          continue;
        }
        undo();
        return r.error();
      }
      added_.push_back(token_of(id));
    }
    live.push_back(id);
  }
  std::sort(left_out.begin(), left_out.end());
  for (const auto& c : snap.pending) {
    if (std::binary_search(left_out.begin(), left_out.end(), c.id)) continue;
    char name[32];
    std::snprintf(name, sizeof name, "conn@%x", c.id);
    const auto* in = reinterpret_cast<const std::uint8_t*>(c.in.data());
    const auto* out = reinterpret_cast<const std::uint8_t*>(c.out.data());
    sub.children.push_back(KhoNode{name,
                                   {KhoProperty::u32("id", c.id),
                                    KhoProperty::bytes("in", std::span<const std::uint8_t>(in, c.in.size())),
                                    KhoProperty::bytes("out", std::span<const std::uint8_t>(out, c.out.size())),
                                    KhoProperty::u32("closing", c.closing ? 1 : 0)},
                                   {}});
  }
  sub.properties = {KhoProperty::u32("region", range.region), KhoProperty::u64("offset", range.offset),
                    KhoProperty::u64("bytes", range.pages * sdk::kPageSize),
                    KhoProperty::bytes("ids", encode_ids(live))};
  if (sub.children.size() > handover::kMaxChildren) {
    undo();
    return MK_FAIL(E2BIG, "kv: too many connections with pending data to hand over",
                   "%zu (the blob's cap is %zu per node); retry once they drained", sub.children.size(),
                   handover::kMaxChildren);
  }
  blob.subsystems.push_back(std::move(sub));
  return {};
}

void KvHandler::unfreeze() {
  files_->drop(added_);
  added_.clear();
  if (auto r = (*ctx_.service)->resume(); !r) {
    ctx_.con->print("mk-kernel: kv: cannot resume after a cancelled update: %s\n", r.error().to_string().c_str());
  }
}

Result<void> KvHandler::stage() {
  std::vector<KvConnState> conns;
  struct Guard {  // until KvService::stage owns them
    std::vector<KvConnState>* v;
    ~Guard() {
      for (auto& c : *v) handover::OwnedFd drop(c.fd);
    }
  } guard{&conns};
  for (std::uint64_t token : files_->staged_tokens(kConnToken)) {
    MK_TRY_ASSIGN(handover::OwnedFd fd, files_->take(token));
    conns.push_back(KvConnState{static_cast<std::uint32_t>(token), fd.release(), {}, {}, false});
  }
  const std::vector<int> listen = listen_fds();
  if (listen.empty()) {
    return MK_FAIL(ENOENT, "kv service: no listen device", "the pre-copy installed no listen device fd");
  }
  std::vector<std::uint32_t> ids;
  for (const auto& c : conns) ids.push_back(c.id);
  std::sort(ids.begin(), ids.end());
  std::vector<KvConnState> owned = std::move(conns);
  conns.clear();  // KvService::stage owns them now, even on error
  MK_TRY_ASSIGN(staged_, KvService::stage(listen, ctx_.tree->cpus.front().os_index, ctx_.con, std::move(owned)));
  staged_ids_ = std::move(ids);
  return {};
}

Result<void> KvHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub, handover::find_compatible(blob, "kv", kPrefix, kVersion));
  std::optional<std::uint32_t> region;
  std::optional<std::uint64_t> offset, bytes;
  const KhoProperty* ids_prop = nullptr;
  for (const auto& p : sub->properties) {
    if (p.name == "region") {
      MK_TRY_ASSIGN(region, p.as_u32());
    } else if (p.name == "offset") {
      MK_TRY_ASSIGN(offset, p.as_u64());
    } else if (p.name == "bytes") {
      MK_TRY_ASSIGN(bytes, p.as_u64());
    } else if (p.name == "ids") {
      ids_prop = &p;
    }
  }
  if (!ids_prop || ids_prop->value.size() % 4 != 0) {
    return MK_FAIL(EINVAL, "handover: bad kv record", "/kv/ids: a list of u32 connection ids required");
  }
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < ids_prop->value.size(); i += 4) {
    const auto* b = &ids_prop->value[i];
    ids.push_back(std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3]);
  }
  std::vector<std::uint32_t> sorted = ids;  // in the old image's fd order: usually nearly sorted
  if (!std::is_sorted(sorted.begin(), sorted.end())) std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return MK_FAIL(EINVAL, "handover: a kv id listed twice", "/kv/ids lists a connection twice");
  }
  MK_TRY_ASSIGN(std::vector<ConnRecord> records, parse_records(*sub));
  std::vector<std::uint32_t> seen;
  for (const auto& r : records) {
    if (!std::binary_search(sorted.begin(), sorted.end(), r.id)) {
      return MK_FAIL(EINVAL, "handover: a kv record for an id not listed", "/kv/conn@%x: id %u is not in /kv/ids",
                     r.id, r.id);
    }
    seen.push_back(r.id);
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    return MK_FAIL(EINVAL, "handover: two kv records for one id", "two /kv/conn@ records for one id");
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
  // The connections: staged ones get their buffers, the others their fd.
  std::vector<KvConnState> changes;
  struct Guard {  // until KvService::begin/start owns them
    std::vector<KvConnState>* v;
    ~Guard() {
      for (auto& c : *v) handover::OwnedFd drop(c.fd);
    }
  } guard{&changes};
  std::size_t r = 0;
  std::sort(records.begin(), records.end(), [](const ConnRecord& a, const ConnRecord& b) { return a.id < b.id; });
  auto staged = staged_ids_.begin();  // both sorted: one walk
  for (std::uint32_t id : sorted) {
    while (staged != staged_ids_.end() && *staged < id) ++staged;
    const bool was_staged = staged != staged_ids_.end() && *staged == id;
    KvConnState st{id, -1, {}, {}, false};
    const bool has_record = r < records.size() && records[r].id == id;
    if (has_record) {
      st.in = std::move(records[r].in);
      st.out = std::move(records[r].out);
      st.closing = records[r].closing;
      ++r;
    }
    if (!was_staged) {
      MK_TRY_ASSIGN(handover::OwnedFd fd, files_->take(token_of(id)));
      st.fd = fd.release();
    } else if (!has_record) {
      continue;  // staged, nothing buffered: begin() keeps it as it is
    }
    changes.push_back(std::move(st));
  }
  std::vector<KvConnState> owned = std::move(changes);
  changes.clear();  // begin/start own them now, even on error
  if (staged_) {
    MK_TRY(staged_->begin(*store, &sorted, std::move(owned)));
    *ctx_.service = std::move(staged_);
  } else {
    const std::vector<int> listen = listen_fds();
    if (listen.empty()) {
      for (auto& c : owned) handover::OwnedFd drop(c.fd);
      return MK_FAIL(ENOENT, "kv service: no listen device", "the successor's tree has no listen device with an fd");
    }
    MK_TRY_ASSIGN(*ctx_.service, KvService::start(*store, listen, ctx_.tree->cpus.front().os_index, ctx_.con,
                                                  std::move(owned)));
  }
  *ctx_.store = range;
  started_ = true;
  ctx_.con->print("mk-kernel: kv: restored the store in /memory@0 (%llu keys) and %zu connections (%zu pre-copied)\n",
                  static_cast<unsigned long long>(store->dbsize()), ids.size(), staged_ids_.size());
  return {};
}

Result<void> KvHandler::finish() {
  started_ = false;  // the service is this image's from here on
  added_.clear();
  precopied_.clear();
  staged_ids_.clear();
  return {};
}

}  // namespace mk::image
