// Endpoint request/response: the fixed pending table, request ids,
// completion, timeouts and failing requests of a peer that went down.
// See ipi/endpoint.h.
#include <algorithm>
#include <cstring>

#include "endpoint_internal.h"

namespace mk::ipi {

using Clock = Channel::Clock;

Result<std::uint32_t> Endpoint::request_async(PeerId peer, std::uint16_t type,
                                              std::span<const std::byte> bytes,
                                              std::chrono::nanoseconds timeout, ResponseFn done) {
  Peer* p = find(peer);
  if (!p) return MK_FAIL(ENOENT, "unknown ipi peer", "peer %u", peer);
  if (p->down) return MK_FAIL(ECONNRESET, "ipi peer down", "peer %u is down", peer);
  if (!done) return fail(EINVAL, "empty ipi response callback");
  if (free_slots_.empty()) {
    return MK_FAIL(ENOSPC, "too many pending ipi requests", "%u outstanding", opts_.max_pending);
  }
  const std::uint32_t slot = free_slots_.back();
  const std::uint32_t gen = next_gen_;
  next_gen_ = next_gen_ == 0xffff ? 1 : next_gen_ + 1;
  const std::uint32_t id = (gen << 16) | slot;
  MK_TRY(p->ch.send(type, bytes, timeout, MessageKind::kRequest, id));
  p->ch.flush();  // requests are latency-bound: publish now
  free_slots_.pop_back();
  Pending& e = pending_[slot];
  e.used = true;
  e.id = id;
  e.peer = peer;
  e.type = type;
  e.deadline = deadline_after(timeout);
  e.done = std::move(done);
  ++pending_count_;
  next_expiry_ = std::min(next_expiry_, e.deadline);
  return id;
}

Result<std::size_t> Endpoint::request(PeerId peer, std::uint16_t type, std::span<const std::byte> bytes,
                                      std::span<std::byte> reply, std::chrono::nanoseconds timeout) {
  if (dispatch_depth_ > 0) {
    return MK_FAIL(EDEADLK, "synchronous ipi request from a handler",
                   "type 0x%04x: use request_async inside handlers", type);
  }
  struct State {
    std::span<std::byte> reply;
    bool done = false;
    std::size_t len = 0;
    Error err{};
    bool failed = false;
  } st{reply};
  MK_TRY(request_async(peer, type, bytes, timeout, [s = &st](Result<std::span<const std::byte>> r) {
    s->done = true;
    if (!r) {
      s->failed = true;
      s->err = r.error();
    } else if (r->size() > s->reply.size()) {
      s->failed = true;
      s->err = MK_FAIL(EMSGSIZE, "ipi reply too large", "%zu bytes for a %zu-byte buffer", r->size(),
                       s->reply.size());
    } else {
      std::memcpy(s->reply.data(), r->data(), r->size());
      s->len = r->size();
    }
  }));
  while (!st.done) (void)dispatch(opts_.liveness_interval);
  if (st.failed) return st.err;
  return st.len;
}

void Endpoint::complete(Peer& p, const InMessage& m) {
  const std::uint32_t slot = m.corr & 0xffff;
  if (slot >= pending_.size() || !pending_[slot].used || pending_[slot].id != m.corr ||
      pending_[slot].peer != p.id) {
    ++stats_.stray_responses;  // late (already timed out) or forged
    return;
  }
  Pending& e = pending_[slot];
  ResponseFn done = std::move(e.done);
  const std::uint16_t type = e.type;
  e.used = false;
  free_slots_.push_back(slot);
  --pending_count_;
  if (m.kind == MessageKind::kResponse) {
    done(m.payload);
    return;
  }
  std::int32_t code = EPROTO;
  if (m.payload.size() == sizeof code) std::memcpy(&code, m.payload.data(), sizeof code);
  if (code <= 0 || code > 4095) code = EPROTO;
  done(MK_FAIL(code, "ipi request failed at the peer", "peer %u answered type 0x%04x with errno %d (%s)",
               p.id, type, code, std::strerror(code)));
}

void Endpoint::expire_requests() {
  if (pending_count_ == 0) {
    // Every request was answered: no deadline left to wake up for (a stale
    // past deadline here would turn dispatch()'s sleep into a busy loop).
    next_expiry_ = Clock::time_point::max();
    return;
  }
  const auto now = Clock::now();
  if (now < next_expiry_) return;
  next_expiry_ = Clock::time_point::max();
  for (std::uint32_t i = 0; i < pending_.size(); ++i) {
    Pending& e = pending_[i];
    if (!e.used) continue;
    if (e.deadline > now) {
      next_expiry_ = std::min(next_expiry_, e.deadline);
      continue;
    }
    ResponseFn done = std::move(e.done);
    const PeerId peer = e.peer;
    const std::uint16_t type = e.type;
    e.used = false;
    free_slots_.push_back(i);
    --pending_count_;
    ++stats_.timeouts;
    done(MK_FAIL(ETIMEDOUT, "ipi request timed out", "no reply from peer %u to type 0x%04x", peer, type));
  }
}

void Endpoint::fail_pending(PeerId peer, const Error& why) {
  for (std::uint32_t i = 0; i < pending_.size(); ++i) {
    Pending& e = pending_[i];
    if (!e.used || e.peer != peer) continue;
    ResponseFn done = std::move(e.done);
    Error err = why;
    err.set_detail("request type 0x%04x to peer %u failed: %s", e.type, peer, why.message());
    e.used = false;
    free_slots_.push_back(i);
    --pending_count_;
    done(err);
  }
}

}  // namespace mk::ipi
