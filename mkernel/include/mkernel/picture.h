// DOC: mk::draw_partition — a picture of the partition (`mkctl show --picture`).
//
// What this is: the machine's topology as hwloc's `lstopo` draws it, with
// each instance's CPUs, the NUMA nodes holding its memory and its net/block
// devices coloured, one colour per instance, and labelled; the host's CPUs are
// left plain and the pool's free CPUs light grey. It works for the live
// machine and for a recorded hwloc XML (`--topology`), so a plan can be looked
// at before it is applied. The second hwloc seam beside topology.cc: only
// picture.cc and topology.cc include hwloc.h.
//
// Happy path:
//   1. picture_format(path): ".svg" or ".png" (case-insensitive);
//   2. picture_key(topo, partition): a colour per instance — instances on the
//      most efficient CPU kind get cool colours (blues), those on the most
//      performant kind warm ones (reds, oranges), middle kinds greens, and a
//      machine without kinds a mixed palette — and the legend lines
//      (instance, colour, CPUs, memory per node, kind); pure, no hwloc;
//   3. annotate_topology(topo, key, xml): loads topo.source again with hwloc
//      (the live machine or the XML file), adds `lstopoStyle` infos
//      ("Background=#rrggbb;Text=#rrggbb") to every instance PU, to the
//      nodes and devices an instance alone holds, a Misc label per instance in
//      each package it has CPUs in ("NAME: cpus LIST") and in each node
//      holding its memory ("NAME: SIZE"), the legend as `lstopoLegend` infos
//      of the root, and exports the result as hwloc XML;
//   4. draw_partition(topo, partition, out): 3 into a private temporary
//      directory, `lstopo-no-graphics` (else `lstopo`) --of svg on it, the
//      SVG's viewBox made unit-free ("0 0 322px 324px" → "0 0 322 324", which
//      librsvg would otherwise render blank), then for .png `rsvg-convert`;
//      the result is written next to `out` under a hidden temporary name and
//      renamed over it. Both tools run with posix_spawn (stdin /dev/null,
//      stdout discarded, stderr kept for the error) under a timeout.
//
// Unhappy paths (nothing is left behind: the temporary directory and the
// temporary output file are removed, an existing `out` is left unchanged):
//   1. the extension is neither .png nor .svg → EINVAL naming both;
//   2. the directory of `out` cannot be written → its errno, naming the path;
//   3. an instance CPU or memory node the topology does not have → EINVAL
//      (the state belongs to another machine);
//   4. hwloc cannot load the topology or export the XML → EIO;
//   5. lstopo / rsvg-convert not in PATH → ENOENT: "install hwloc-nox" /
//      "install librsvg2-bin" (an SVG needs no rsvg-convert);
//   6. a tool exits non-zero or is killed → EIO with its stderr's first line;
//      runs past the timeout → ETIMEDOUT (it is killed and reaped);
//   7. the output is not what it should be (no <svg, no PNG signature) → EIO.
//
// Returns: the path written, its format and size, and the key used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/instance.h"
#include "mkernel/partition.h"
#include "mkernel/topology.h"

namespace mk {

enum class PictureFormat { kSvg, kPng };
const char* to_string(PictureFormat f);  // "svg" | "png"

// Returns: EINVAL when `path` ends neither in .svg nor in .png.
Result<PictureFormat> picture_format(std::string_view path);

// One instance as the picture shows it.
struct PictureEntry {
  std::string name;
  std::string colour;       // background, "#rrggbb"
  std::string text_colour;  // "#000000" or "#ffffff", whichever reads on it
  std::string kind;         // "P-cores", "E-cores", "kind K" or "" (no kinds)
  CpuSet cpus;
  std::vector<MemoryRegion> memory;
  std::vector<std::string> devices;  // net/block device names coloured with it
};

struct PictureKey {
  std::vector<PictureEntry> instances;  // the partition's order (by id)
  CpuSet host_cpus;                     // not in the pool: plain
  CpuSet free_cpus;                     // in the pool, no instance: light grey
  std::vector<std::string> legend;      // lines under the picture
};

inline constexpr const char* kPictureFreeColour = "#e0e0e0";

PictureKey picture_key(const Topology& topo, const Partition& part);

// Step 3 above, to `xml_path` (overwritten).
// Returns: EINVAL for a CPU/node the topology lacks; EIO when hwloc fails.
Result<void> annotate_topology(const Topology& topo, const PictureKey& key, const std::string& xml_path);

struct PictureOptions {
  int timeout_ms = 60000;  // per tool run
};

struct PictureResult {
  std::string path;
  PictureFormat format = PictureFormat::kSvg;
  uint64_t bytes = 0;
  PictureKey key;
};

Result<PictureResult> draw_partition(const Topology& topo, const Partition& part, const std::string& out_path,
                                     const PictureOptions& options = {});

}  // namespace mk
