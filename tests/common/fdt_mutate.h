// Test helpers that corrupt valid FDT blobs with libfdt's read-write API, so
// each parser rule can be hit by exactly one mutation.
#pragma once

#include <gtest/gtest.h>
#include <libfdt.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace mk::testing {

using Blob = std::vector<uint8_t>;

// Opens `in` into a roomy buffer, applies `edit`, packs and returns it.
inline Blob mutate(const Blob& in, const std::function<void(void*)>& edit) {
  std::vector<uint64_t> buf((in.size() + 65536) / 8);
  int size = static_cast<int>(buf.size() * 8);
  std::vector<uint64_t> aligned_in((in.size() + 7) / 8);
  std::memcpy(aligned_in.data(), in.data(), in.size());
  EXPECT_EQ(fdt_open_into(aligned_in.data(), buf.data(), size), 0);
  edit(buf.data());
  EXPECT_EQ(fdt_pack(buf.data()), 0);
  const auto* b = reinterpret_cast<const uint8_t*>(buf.data());
  return Blob(b, b + fdt_totalsize(buf.data()));
}

inline int node(void* f, const std::string& path) {
  int off = fdt_path_offset(f, path.c_str());
  EXPECT_GE(off, 0) << "no node " << path;
  return off;
}

inline void set_bytes(void* f, const std::string& path, const char* prop, const void* v, int len) {
  EXPECT_EQ(fdt_setprop(f, node(f, path), prop, v, len), 0) << path << " " << prop;
}

inline void set_u32(void* f, const std::string& path, const char* prop, uint32_t v) {
  EXPECT_EQ(fdt_setprop_u32(f, node(f, path), prop, v), 0) << path << " " << prop;
}

inline void set_u64(void* f, const std::string& path, const char* prop, uint64_t v) {
  EXPECT_EQ(fdt_setprop_u64(f, node(f, path), prop, v), 0) << path << " " << prop;
}

inline void set_str(void* f, const std::string& path, const char* prop, const std::string& v) {
  EXPECT_EQ(fdt_setprop_string(f, node(f, path), prop, v.c_str()), 0) << path << " " << prop;
}

inline void del_prop(void* f, const std::string& path, const char* prop) {
  EXPECT_EQ(fdt_delprop(f, node(f, path), prop), 0) << path << " " << prop;
}

inline void del_node(void* f, const std::string& path) { EXPECT_EQ(fdt_del_node(f, node(f, path)), 0) << path; }

inline void rename(void* f, const std::string& path, const char* name) {
  EXPECT_EQ(fdt_set_name(f, node(f, path), name), 0) << path;
}

// Adds `name` under `parent` as a copy of every property of `model`.
// fdt_set_name() does not check siblings, so a copy renamed afterwards is
// how the tests build duplicate nodes.
inline void copy_node(void* f, const std::string& model, const std::string& parent, const char* name) {
  // Collect first: adding the node moves everything after it.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> props;
  int prop;
  fdt_for_each_property_offset(prop, f, node(f, model)) {
    const char* pname;
    int len;
    const auto* v = static_cast<const uint8_t*>(fdt_getprop_by_offset(f, prop, &pname, &len));
    props.emplace_back(pname, std::vector<uint8_t>(v, v + len));
  }
  int dst = fdt_add_subnode(f, node(f, parent), name);
  ASSERT_GE(dst, 0) << name;
  std::string path = (parent == "/" ? "" : parent) + "/" + name;
  for (const auto& [pname, value] : props) {
    ASSERT_EQ(fdt_setprop(f, node(f, path), pname.c_str(), value.data(),
                          static_cast<int>(value.size())), 0);
  }
}

}  // namespace mk::testing
