// Update state machine: every legal and illegal transition, the handler
// protocol's order, and unwinding with a failing handler at every position.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "handover/update.h"

namespace mk::handover {
namespace {

using Log = std::vector<std::string>;
using S = UpdateState;

class Recorder : public Handler {
 public:
  Recorder(std::string name, Log* log) : name_(std::move(name)), log_(log) {}
  std::string_view name() const override { return name_; }
  Result<void> preserve(KhoBlob& blob) override {
    blob.subsystems.push_back(Subsystem{name_, "test," + name_ + "-v1", {}, {}});
    return step("preserve");
  }
  void cancel() override { log_->push_back(name_ + ".cancel"); }
  Result<void> freeze(KhoBlob&) override { return step("freeze"); }
  void unfreeze() override { log_->push_back(name_ + ".unfreeze"); }
  Result<void> retrieve(const KhoBlob& blob) override {
    if (!find_subsystem(blob, name_)) return MK_FAIL(ENOENT, "missing", "no %s", name_.c_str());
    return step("retrieve");
  }
  Result<void> finish() override { return step("finish"); }

  std::string fail_on;  // step name that fails (once if fail_once)
  bool fail_once = false;

 private:
  Result<void> step(const char* what) {
    log_->push_back(name_ + "." + what);
    if (fail_on == what) {
      if (fail_once) fail_on.clear();
      return MK_FAIL(EIO, "test failure", "%s refuses to %s", name_.c_str(), what);
    }
    return ok();
  }
  std::string name_;
  Log* log_;
};

struct Fixture {
  Log log;
  std::vector<std::unique_ptr<Recorder>> handlers;
  UpdateMachine m;
  KhoBlob blob;
  explicit Fixture(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      handlers.push_back(std::make_unique<Recorder>("h" + std::to_string(i), &log));
      EXPECT_TRUE(m.add_handler(handlers.back().get()));
    }
  }
  // Drives the machine to `s` through the happy path.
  void reach(S s) {
    if (s == S::kNormal) return;
    ASSERT_TRUE(m.prepare(blob));
    if (s == S::kPrepared) return;
    ASSERT_TRUE(m.freeze(blob));
    if (s == S::kFrozen) return;
    ASSERT_TRUE(m.retrieve(blob));
  }
};

TEST(UpdateMachine, TransitionTable) {
  const S all[] = {S::kNormal, S::kPrepared, S::kFrozen, S::kUpdated};
  int legal = 0;
  for (S from : all)
    for (S to : all) legal += is_legal_transition(from, to);
  EXPECT_EQ(legal, 6);
  EXPECT_TRUE(is_legal_transition(S::kNormal, S::kPrepared));
  EXPECT_TRUE(is_legal_transition(S::kPrepared, S::kFrozen));
  EXPECT_TRUE(is_legal_transition(S::kFrozen, S::kUpdated));
  EXPECT_TRUE(is_legal_transition(S::kUpdated, S::kNormal));
  EXPECT_TRUE(is_legal_transition(S::kPrepared, S::kNormal));
  EXPECT_TRUE(is_legal_transition(S::kFrozen, S::kNormal));
  EXPECT_EQ(to_string(S::kFrozen), "frozen");
}

TEST(UpdateMachine, HappyPathRunsHandlersInOrder) {
  Fixture f(3);
  std::vector<std::pair<S, S>> seen;
  f.m.set_observer([&](S from, S to) { seen.emplace_back(from, to); });
  ASSERT_TRUE(f.m.prepare(f.blob));
  EXPECT_EQ(f.m.state(), S::kPrepared);
  ASSERT_TRUE(f.m.freeze(f.blob));
  EXPECT_EQ(f.m.state(), S::kFrozen);
  ASSERT_TRUE(f.m.retrieve(f.blob));
  EXPECT_EQ(f.m.state(), S::kUpdated);
  ASSERT_TRUE(f.m.finish());
  EXPECT_EQ(f.m.state(), S::kNormal);
  EXPECT_EQ(f.log, (Log{"h0.preserve", "h1.preserve", "h2.preserve", "h0.freeze", "h1.freeze", "h2.freeze",
                        "h0.retrieve", "h1.retrieve", "h2.retrieve", "h0.finish", "h1.finish", "h2.finish"}));
  EXPECT_EQ(seen, (std::vector<std::pair<S, S>>{
                      {S::kNormal, S::kPrepared}, {S::kPrepared, S::kFrozen}, {S::kFrozen, S::kUpdated},
                      {S::kUpdated, S::kNormal}}));
  EXPECT_EQ(f.blob.subsystems.size(), 3u);
  // A second update on the same machine works the same way.
  f.log.clear();
  f.blob = {};
  f.reach(S::kUpdated);
  EXPECT_TRUE(f.m.finish());
}

TEST(UpdateMachine, NoHandlersStillCycles) {
  Fixture f(0);
  f.reach(S::kUpdated);
  EXPECT_TRUE(f.m.finish());
  f.reach(S::kFrozen);
  EXPECT_TRUE(f.m.cancel());
  EXPECT_EQ(f.m.state(), S::kNormal);
}

TEST(UpdateMachine, IllegalTransitionsAreRefusedWithoutCallingHandlers) {
  struct Case {
    S from;
    const char* op;
    const char* edge;
  };
  const Case cases[] = {
      {S::kNormal, "freeze", "normal -> frozen"},       {S::kNormal, "retrieve", "normal -> updated"},
      {S::kNormal, "finish", "normal -> normal"},       {S::kNormal, "cancel", "normal -> normal"},
      {S::kPrepared, "prepare", "prepared -> prepared"}, {S::kPrepared, "retrieve", "prepared -> updated"},
      {S::kPrepared, "finish", "prepared -> normal"},   {S::kFrozen, "prepare", "frozen -> prepared"},
      {S::kFrozen, "freeze", "frozen -> frozen"},       {S::kFrozen, "finish", "frozen -> normal"},
      {S::kUpdated, "prepare", "updated -> prepared"},  {S::kUpdated, "freeze", "updated -> frozen"},
      {S::kUpdated, "retrieve", "updated -> updated"},  {S::kUpdated, "cancel", "updated -> normal"},
  };
  for (const Case& c : cases) {
    Fixture f(2);
    f.reach(c.from);
    f.log.clear();
    std::string op = c.op;
    Result<void> r = op == "prepare"    ? f.m.prepare(f.blob)
                     : op == "freeze"   ? f.m.freeze(f.blob)
                     : op == "retrieve" ? f.m.retrieve(f.blob)
                     : op == "finish"   ? f.m.finish()
                                        : f.m.cancel();
    ASSERT_FALSE(r) << op << " from " << to_string(c.from);
    EXPECT_EQ(r.error().code(), EINVAL);
    EXPECT_NE(std::string(r.error().message()).find(c.edge), std::string::npos)
        << r.error().message() << " lacks " << c.edge;
    EXPECT_EQ(f.m.state(), c.from);
    EXPECT_TRUE(f.log.empty()) << op << " from " << to_string(c.from) << " called " << f.log[0];
  }
}

TEST(UpdateMachine, PreserveFailureUnwindsPreparedHandlersInReverse) {
  constexpr std::size_t kN = 4;
  for (std::size_t fail = 0; fail < kN; ++fail) {
    Fixture f(kN);
    f.handlers[fail]->fail_on = "preserve";
    auto r = f.m.prepare(f.blob);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EIO);
    std::string name = "h" + std::to_string(fail);
    EXPECT_NE(std::string(r.error().message()).find("handler '" + name + "'"), std::string::npos)
        << r.error().message();
    EXPECT_NE(std::string(r.error().message()).find("failed to preserve"), std::string::npos);
    EXPECT_EQ(f.m.last_failed_handler(), name);
    EXPECT_EQ(f.m.state(), S::kNormal);
    Log want;
    for (std::size_t i = 0; i <= fail; ++i) want.push_back("h" + std::to_string(i) + ".preserve");
    for (std::size_t i = fail; i-- > 0;) want.push_back("h" + std::to_string(i) + ".cancel");
    EXPECT_EQ(f.log, want) << "failing handler at " << fail;
    // Nothing is stuck: the next prepare runs again from the start.
    f.handlers[fail]->fail_on.clear();
    f.log.clear();
    EXPECT_TRUE(f.m.prepare(f.blob));
    EXPECT_EQ(f.m.last_failed_handler(), "");
  }
}

TEST(UpdateMachine, FreezeFailureUnfreezesInReverseAndStaysPrepared) {
  constexpr std::size_t kN = 4;
  for (std::size_t fail = 0; fail < kN; ++fail) {
    Fixture f(kN);
    f.reach(S::kPrepared);
    f.log.clear();
    f.handlers[fail]->fail_on = "freeze";
    auto r = f.m.freeze(f.blob);
    ASSERT_FALSE(r);
    EXPECT_EQ(f.m.last_failed_handler(), "h" + std::to_string(fail));
    EXPECT_NE(std::string(r.error().message()).find("failed to freeze"), std::string::npos);
    EXPECT_EQ(f.m.state(), S::kPrepared);
    Log want;
    for (std::size_t i = 0; i <= fail; ++i) want.push_back("h" + std::to_string(i) + ".freeze");
    for (std::size_t i = fail; i-- > 0;) want.push_back("h" + std::to_string(i) + ".unfreeze");
    EXPECT_EQ(f.log, want) << "failing handler at " << fail;
    // The update is then cancelled: every handler is cancelled, newest first.
    f.log.clear();
    ASSERT_TRUE(f.m.cancel());
    EXPECT_EQ(f.log, (Log{"h3.cancel", "h2.cancel", "h1.cancel", "h0.cancel"}));
    EXPECT_EQ(f.m.state(), S::kNormal);
  }
}

TEST(UpdateMachine, FreezeRetryAfterFailure) {
  Fixture f(2);
  f.reach(S::kPrepared);
  f.handlers[1]->fail_on = "freeze";
  f.handlers[1]->fail_once = true;
  ASSERT_FALSE(f.m.freeze(f.blob));
  ASSERT_TRUE(f.m.freeze(f.blob));
  EXPECT_EQ(f.m.state(), S::kFrozen);
}

TEST(UpdateMachine, CancelFromPreparedAndFrozen) {
  Fixture p(3);
  p.reach(S::kPrepared);
  p.log.clear();
  ASSERT_TRUE(p.m.cancel());
  EXPECT_EQ(p.log, (Log{"h2.cancel", "h1.cancel", "h0.cancel"}));
  EXPECT_EQ(p.m.state(), S::kNormal);

  Fixture f(3);
  f.reach(S::kFrozen);
  f.log.clear();
  ASSERT_TRUE(f.m.cancel());
  EXPECT_EQ(f.log, (Log{"h2.unfreeze", "h1.unfreeze", "h0.unfreeze", "h2.cancel", "h1.cancel", "h0.cancel"}));
  EXPECT_EQ(f.m.state(), S::kNormal);
}

TEST(UpdateMachine, RetrieveFailureStaysFrozenThenRollsBack) {
  constexpr std::size_t kN = 3;
  for (std::size_t fail = 0; fail < kN; ++fail) {
    Fixture f(kN);
    f.reach(S::kFrozen);
    f.log.clear();
    f.handlers[fail]->fail_on = "retrieve";
    auto r = f.m.retrieve(f.blob);
    ASSERT_FALSE(r);
    EXPECT_EQ(f.m.last_failed_handler(), "h" + std::to_string(fail));
    EXPECT_EQ(f.m.state(), S::kFrozen);
    ASSERT_TRUE(f.m.cancel());  // rollback: the old image is unfrozen
    EXPECT_EQ(f.m.state(), S::kNormal);
  }
  // A blob without a handler's subtree is refused by that handler.
  Fixture f(2);
  f.reach(S::kFrozen);
  auto r = f.m.retrieve(KhoBlob{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_EQ(f.m.last_failed_handler(), "h0");
}

TEST(UpdateMachine, FinishFailureRetriesOnlyUnfinishedHandlers) {
  constexpr std::size_t kN = 3;
  for (std::size_t fail = 0; fail < kN; ++fail) {
    Fixture f(kN);
    f.reach(S::kUpdated);
    f.log.clear();
    f.handlers[fail]->fail_on = "finish";
    f.handlers[fail]->fail_once = true;
    auto r = f.m.finish();
    ASSERT_FALSE(r);
    EXPECT_EQ(f.m.state(), S::kUpdated);
    EXPECT_EQ(f.m.last_failed_handler(), "h" + std::to_string(fail));
    EXPECT_EQ(f.m.cancel().error().code(), EINVAL);  // the new image owns the instance
    ASSERT_TRUE(f.m.finish());
    EXPECT_EQ(f.m.state(), S::kNormal);
    Log want;
    for (std::size_t i = 0; i <= fail; ++i) want.push_back("h" + std::to_string(i) + ".finish");
    for (std::size_t i = fail; i < kN; ++i) want.push_back("h" + std::to_string(i) + ".finish");
    EXPECT_EQ(f.log, want) << "failing handler at " << fail;
  }
}

TEST(UpdateMachine, AddHandlerErrors) {
  Log log;
  UpdateMachine m;
  Recorder a("a", &log), a2("a", &log), b("b", &log), empty("", &log);
  EXPECT_EQ(m.add_handler(nullptr).error().code(), EINVAL);
  EXPECT_EQ(m.add_handler(&empty).error().code(), EINVAL);
  ASSERT_TRUE(m.add_handler(&a));
  EXPECT_EQ(m.add_handler(&a2).error().code(), EEXIST);
  KhoBlob blob;
  ASSERT_TRUE(m.prepare(blob));
  EXPECT_EQ(m.add_handler(&b).error().code(), EINVAL);
  EXPECT_EQ(m.handler_count(), 1u);
}

}  // namespace
}  // namespace mk::handover
