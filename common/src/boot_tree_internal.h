// Declarations shared by boot_tree.cc (rules, writer) and boot_tree_parse.cc
// (reader). Private to mkcommon.
#pragma once

#include <string_view>

namespace mk::bt {

// Error class (Error::what) of every boot-tree failure.
inline constexpr const char* kWhat = "bad boot tree";

// boot_tree.cc: a device string-property key: 1..31 chars of
// [A-Za-z0-9_.+-], not "compatible", "name" or "phandle".
bool is_valid_prop_key(std::string_view key) noexcept;

}  // namespace mk::bt
