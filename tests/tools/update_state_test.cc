// mkerneld's live-update status values (tools/mkerneld/update_state.h): the
// state names, the last-update record's JSON (every refusal of a bad
// record), its line of text, and its file (missing, saved, reloaded, corrupt).
#include "update_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using mkerneld::LastUpdate;

LastUpdate rolled_back() {
  return {"2026-11-30T18:40:15Z", 4, "/opt/mk-kernel", "rolled back", 3001.25,
          "update step failed: handover to the image (pid 7): timed out", "successor killed, old image unfrozen"};
}

TEST(UpdateState, NamesRoundTripAndUnknownOnesAreRefused) {
  for (const char* s : {"normal", "prepared", "frozen", "updated"}) {
    auto st = mkerneld::parse_update_state(s);
    ASSERT_TRUE(st) << s;
    EXPECT_STREQ(mkerneld::to_string(*st), s);
  }
  EXPECT_FALSE(mkerneld::parse_update_state("rolled back"));
  EXPECT_FALSE(mkerneld::parse_update_state(""));
}

TEST(UpdateState, WhenIsIso8601Utc) {
  EXPECT_TRUE(std::regex_match(mkerneld::utc_now_iso8601(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
}

TEST(UpdateState, LastUpdateJsonRoundTrips) {
  LastUpdate ok{"2026-11-30T18:40:12Z", 3, "/opt/mk-kernel", "updated", 0.812, "", ""};
  json::object o = mkerneld::last_update_to_json(ok);
  EXPECT_EQ(o.at("outcome").as_string(), "updated");
  EXPECT_FALSE(o.contains("cause"));  // only a rollback has one
  auto back = mkerneld::last_update_from_json(o);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->when, ok.when);
  EXPECT_EQ(back->update_id, 3u);
  EXPECT_EQ(back->kernel, ok.kernel);
  EXPECT_DOUBLE_EQ(*back->blackout_ms, 0.812);

  LastUpdate rb = rolled_back();
  rb.blackout_ms.reset();  // rolled back before the freeze
  json::object r = mkerneld::last_update_to_json(rb);
  EXPECT_TRUE(r.at("blackout_ms").is_null());
  auto rback = mkerneld::last_update_from_json(r);
  ASSERT_TRUE(rback) << rback.error().to_string();
  EXPECT_FALSE(rback->blackout_ms);
  EXPECT_EQ(rback->outcome, "rolled back");
  EXPECT_EQ(rback->cause, rb.cause);
  EXPECT_EQ(rback->rollback, rb.rollback);
}

TEST(UpdateState, BadRecordsAreRefusedNamingTheField) {
  const json::object good = mkerneld::last_update_to_json(rolled_back());
  // value null: the field is removed.
  auto refused = [&](const char* field, const json::value& value) {
    json::object o = good;
    if (value.is_null()) o.erase(field);
    else o[field] = value;
    auto r = mkerneld::last_update_from_json(o);
    ASSERT_FALSE(r) << field << " = " << json::serialize(value);
    EXPECT_EQ(r.error().code(), EBADMSG);
    EXPECT_NE(std::string(r.error().message()).find(field), std::string::npos) << r.error().to_string();
  };
  refused("when", nullptr);
  refused("when", "yesterday");
  refused("when", 12);
  refused("update_id", nullptr);
  refused("update_id", -1);
  refused("update_id", 4294967296LL);
  refused("update_id", "4");
  refused("kernel", nullptr);
  refused("kernel", json::array{});
  refused("outcome", "half done");
  refused("outcome", nullptr);
  refused("blackout_ms", -1.0);
  refused("blackout_ms", "1 ms");
  refused("cause", 5);
  refused("rollback", json::string(std::string(5000, 'x')));
  auto not_object = mkerneld::last_update_from_json(json::array{1, 2});
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().code(), EBADMSG);
}

TEST(UpdateState, TextNamesOutcomeBlackoutAndCause) {
  LastUpdate ok{"2026-11-30T18:40:12Z", 3, "/opt/mk-kernel", "updated", 0.812, "", ""};
  EXPECT_EQ(mkerneld::last_update_text(ok), "2026-11-30T18:40:12Z updated, blackout 0.812 ms (update 3, /opt/mk-kernel)");
  LastUpdate rb = rolled_back();
  rb.blackout_ms.reset();
  EXPECT_EQ(mkerneld::last_update_text(rb),
            "2026-11-30T18:40:15Z rolled back (update 4, /opt/mk-kernel): update step failed: handover to the image "
            "(pid 7): timed out; successor killed, old image unfrozen");
}

TEST(UpdateState, FileIsSavedReloadedAndACorruptOneIsRefused) {
  const fs::path dir = fs::path("/tmp") / ("mk-us-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto none = mkerneld::load_last_update(dir, "web");
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_FALSE(*none);

  ASSERT_TRUE(mkerneld::save_last_update(dir, "web", rolled_back()));
  EXPECT_EQ(fs::status(dir / "last-update").permissions() & fs::perms::all, fs::perms::owner_all);
  auto back = mkerneld::load_last_update(dir, "web");
  ASSERT_TRUE(back && *back);
  EXPECT_EQ((*back)->update_id, 4u);
  EXPECT_EQ((*back)->rollback, rolled_back().rollback);

  std::ofstream(mkerneld::last_update_path(dir, "web")) << "{\"when\": ";
  auto torn = mkerneld::load_last_update(dir, "web");
  ASSERT_FALSE(torn);
  EXPECT_EQ(torn.error().code(), EBADMSG);
  EXPECT_NE(std::string(torn.error().message()).find("web.json"), std::string::npos) << torn.error().to_string();

  std::ofstream(mkerneld::last_update_path(dir, "web")) << "{\"when\": \"now\"}";
  auto wrong = mkerneld::load_last_update(dir, "web");
  ASSERT_FALSE(wrong);
  EXPECT_NE(std::string(wrong.error().message()).find("when"), std::string::npos) << wrong.error().to_string();

  // The directory cannot be made: the errno of that step.
  fs::remove_all(dir / "last-update");
  std::ofstream(dir / "last-update") << "a file, not a directory";
  auto blocked = mkerneld::save_last_update(dir, "web", rolled_back());
  ASSERT_FALSE(blocked);
  EXPECT_NE(blocked.error().code(), 0);
  fs::remove_all(dir);
}

}  // namespace
