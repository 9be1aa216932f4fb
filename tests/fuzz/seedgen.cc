// Writes the seed corpora of the fuzz targets into DIR/<target>/:
//   mk_fuzz_seedgen tests/fuzz/corpus
// Boot and pool seeds are emitted from tests/common/boot_tree_samples.h
// (plus variants), text seeds are fixed strings. Overwrites only its own
// file names, so hand-added seeds survive.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "boot_tree_samples.h"

namespace fs = std::filesystem;

namespace {

bool write(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

bool write_text(const fs::path& dir, const std::string& name, const std::string& text) {
  return write(dir, name, std::vector<uint8_t>(text.begin(), text.end()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  fs::path root = argv[1];
  bool ok = true;

  std::vector<std::pair<std::string, mk::BootTree>> trees;
  trees.emplace_back("full.dtb", mk::samples::full_tree());
  trees.emplace_back("minimal.dtb", mk::samples::minimal_tree());
  mk::BootTree no_handover = mk::samples::full_tree();
  no_handover.handover.reset();
  no_handover.init.clear();
  no_handover.devices.resize(1);
  trees.emplace_back("no-handover.dtb", no_handover);
  mk::BootTree channels = mk::samples::minimal_tree();
  channels.ipi.host_id = 0;
  for (uint32_t p = 0; p < 6; ++p) {
    if (p == channels.instance.id) continue;
    channels.ipi.channels.push_back({p, "peer" + std::to_string(p), static_cast<int32_t>(20 + p), 4096u << p,
                                     static_cast<mk::ChannelRole>(p % 3)});
  }
  trees.emplace_back("channels.dtb", channels);
  for (const auto& [name, tree] : trees) {
    auto blob = mk::emit_boot_tree(tree);
    if (!blob) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), blob.error().to_string().c_str());
      return 1;
    }
    ok &= write(root / "fuzz_boot_tree", name, *blob);
  }

  std::vector<std::pair<std::string, mk::PoolTree>> pools;
  pools.emplace_back("full.dtb", mk::samples::full_pool());
  pools.emplace_back("empty.dtb", mk::PoolTree{});
  mk::PoolTree one;
  one.cpus = mk::CpuSet::range(2, 3);
  one.memory = {{0, 1 << 30}};
  pools.emplace_back("one-node.dtb", one);
  for (const auto& [name, pool] : pools) {
    auto blob = mk::emit_pool_tree(pool);
    if (!blob) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), blob.error().to_string().c_str());
      return 1;
    }
    ok &= write(root / "fuzz_pool_tree", name, *blob);
  }

  const char* cpu_lists[] = {"0-3,8,10-11", "0-15:2", "8191", " 5 , 1-2 ", "7,3-5,4,6", "0-8191:1024", "1,,2",
                             "3-1", "0-8192"};
  int i = 0;
  for (const char* s : cpu_lists) ok &= write_text(root / "fuzz_cpu_list", "seed" + std::to_string(i++), s);
  const char* sizes[] = {"4096", "64K", "512M", "2GiB", "1.5G", "10B", " 8 M ", "2gb", "9999999T", "1.3K"};
  i = 0;
  for (const char* s : sizes) ok &= write_text(root / "fuzz_size", "seed" + std::to_string(i++), s);

  if (!ok) {
    std::fprintf(stderr, "mk_fuzz_seedgen: writing under %s failed\n", root.c_str());
    return 1;
  }
  return 0;
}
