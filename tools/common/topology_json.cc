// JSON and text forms of mk::Topology (see topology_json.h).
#include "topology_json.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mk/units.h"

namespace mk::tools {

namespace json = boost::json;

json::value topology_to_json(const Topology& t) {
  json::array pus;
  for (const Pu& p : t.pus) {
    pus.push_back(json::object{{"os_index", p.os_index}, {"core", p.core}, {"package", p.package},
                               {"numa", p.numa}, {"kind", p.kind}, {"l3", p.l3}});
  }
  json::array cores;
  for (const Core& c : t.cores) {
    cores.push_back(json::object{{"index", c.index}, {"os_index", c.os_index}, {"package", c.package},
                                 {"numa", c.numa}, {"pus", c.pus.to_string()}});
  }
  json::array nodes;
  for (const NumaNode& n : t.numa_nodes) {
    nodes.push_back(json::object{{"os_index", n.os_index}, {"memory_bytes", n.memory_bytes},
                                 {"subtype", n.subtype}, {"pus", n.pus.to_string()},
                                 {"local_pus", n.local_pus.to_string()}});
  }
  json::array packages;
  for (const Package& p : t.packages) {
    packages.push_back(json::object{{"os_index", p.os_index}, {"model", p.model}, {"pus", p.pus.to_string()}});
  }
  json::array l3s;
  for (const CacheGroup& g : t.l3_groups) {
    l3s.push_back(json::object{{"index", g.index}, {"size_bytes", g.size_bytes}, {"subtype", g.subtype},
                               {"pus", g.pus.to_string()}});
  }
  json::array kinds;
  for (const CpuKind& k : t.kinds) {
    json::object infos;
    for (const auto& [name, value] : k.infos) infos[name] = value;  // a repeated name keeps the last
    kinds.push_back(json::object{{"index", k.index}, {"efficiency", k.efficiency}, {"pus", k.pus.to_string()},
                                 {"core_type", k.core_type}, {"frequency_max_mhz", k.frequency_max_mhz},
                                 {"infos", std::move(infos)}});
  }
  json::array devices;
  for (const IoDevice& d : t.devices) {
    devices.push_back(json::object{{"kind", d.kind}, {"name", d.name}, {"pci_busid", d.pci_busid},
                                   {"vendor_device", d.vendor_device}, {"description", d.description},
                                   {"numa", d.numa}});
  }
  json::object summary{{"pus", t.pus.size()},
                       {"cores", t.cores.size()},
                       {"numa_nodes", t.numa_nodes.size()},
                       {"packages", t.packages.size()},
                       {"kinds", t.kinds.size()},
                       {"l3_groups", t.l3_groups.size()},
                       {"devices", t.devices.size()},
                       {"memory_bytes", t.total_memory()}};
  return json::object{{"source", t.source},
                      {"is_live", t.is_live},
                      {"machine_model", t.machine_model},
                      {"summary", std::move(summary)},
                      {"pus", std::move(pus)},
                      {"cores", std::move(cores)},
                      {"numa_nodes", std::move(nodes)},
                      {"packages", std::move(packages)},
                      {"l3_groups", std::move(l3s)},
                      {"kinds", std::move(kinds)},
                      {"devices", std::move(devices)}};
}

namespace {

// A plain left-aligned table: rows of cells, columns as wide as their widest
// cell, two spaces apart; the last column is not padded.
class Table {
 public:
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

  void render(std::string& out) const {
    std::vector<std::size_t> width;
    for (const auto& r : rows_) {
      if (width.size() < r.size()) width.resize(r.size(), 0);
      for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    for (const auto& r : rows_) {
      std::string line = "  ";
      for (std::size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 2, ' ');
      }
      // An empty last cell would leave the previous column's padding behind.
      line.erase(line.find_last_not_of(' ') + 1);
      out += line + "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string count_of(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }
std::string or_dash(int32_t v) { return v < 0 ? "-" : std::to_string(v); }

std::string range_text(std::size_t first, std::size_t last) {
  return first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last);
}

void machine_section(const Topology& t, std::string& out) {
  out += "Machine: " + (t.machine_model.empty() ? std::string("(model unknown)") : t.machine_model) +
         "  [" + (t.is_live ? std::string("live") : t.source) + "]\n";
  uint64_t mem = t.total_memory();
  out += "  " + count_of(t.pus.size(), "PU", "PUs") + " in " + count_of(t.cores.size(), "core", "cores") + ", " +
         count_of(t.packages.size(), "package", "packages") + ", " +
         count_of(t.numa_nodes.size(), "NUMA node", "NUMA nodes") + ", " +
         count_of(t.l3_groups.size(), "L3 group", "L3 groups") + ", " +
         count_of(t.kinds.size(), "CPU kind", "CPU kinds") + "; memory " +
         (mem ? format_size(mem) : std::string("unknown")) + "\n";
  for (const Package& p : t.packages) {
    out += "  package " + std::to_string(p.os_index) + ": PUs " + p.pus.to_string() +
           (p.model.empty() ? "" : "  " + p.model) + "\n";
  }
}

void numa_section(const Topology& t, std::string& out) {
  out += "\nNUMA nodes\n";
  Table tab;
  tab.row({"node", "memory", "type", "PUs", "local to"});
  for (const NumaNode& n : t.numa_nodes) {
    // A memory-side node (MCDRAM) owns no PUs; say which PUs reach it first.
    std::string local = n.local_pus == n.pus ? "" : n.local_pus.to_string();
    tab.row({std::to_string(n.os_index), n.memory_bytes ? format_size(n.memory_bytes) : "unknown",
             or_dash(n.subtype), or_dash(n.pus.to_string()), local});
  }
  tab.render(out);
}

void kinds_section(const Topology& t, std::string& out) {
  out += "\nCPU kinds (0 = most power-efficient)\n";
  if (t.kinds.empty()) {
    out += "  none reported (all PUs alike)\n";
    return;
  }
  Table tab;
  tab.row({"kind", "efficiency", "core type", "max MHz", "PUs", "other info"});
  for (const CpuKind& k : t.kinds) {
    std::string other;
    for (const auto& [name, value] : k.infos) {
      if (name == "CoreType" || name == "FrequencyMaxMHz") continue;
      other += (other.empty() ? "" : " ") + name + "=" + value;
    }
    tab.row({std::to_string(k.index), k.efficiency < 0 ? "unranked" : std::to_string(k.efficiency),
             or_dash(k.core_type), k.frequency_max_mhz ? std::to_string(k.frequency_max_mhz) : "-",
             k.pus.to_string(), other});
  }
  tab.render(out);
}

void l3_section(const Topology& t, std::string& out) {
  if (t.l3_groups.empty()) return;
  out += "\nL3 groups\n";
  Table tab;
  tab.row({"L3", "size", "PUs", ""});
  for (const CacheGroup& g : t.l3_groups) {
    tab.row({std::to_string(g.index), format_size(g.size_bytes), g.pus.to_string(), g.subtype});
  }
  tab.render(out);
}

// Consecutive cores are folded into one line when they share package, node
// and SMT width and each one's PUs are the previous one's shifted by the same
// amount: on a 2 x 96-core EPYC that is {n, n+192} for n = 0..95, one line
// per socket instead of 192.
bool continues_run(const Core& prev, const Core& next, int64_t& shift) {
  if (prev.package != next.package || prev.numa != next.numa || prev.pus.count() != next.pus.count()) return false;
  std::vector<uint32_t> a = prev.pus.to_vector(), b = next.pus.to_vector();
  int64_t d = int64_t{b[0]} - int64_t{a[0]};
  if (d <= 0 || (shift != 0 && d != shift)) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (int64_t{b[i]} - int64_t{a[i]} != d) return false;
  }
  shift = d;
  return true;
}

std::string siblings(const Core& c) { return c.pus.count() == 1 ? c.pus.to_string() : "{" + c.pus.to_string() + "}"; }

void cores_section(const Topology& t, std::string& out) {
  out += "\nCores (SMT siblings; alike consecutive cores on one line)\n";
  Table tab;
  tab.row({"cores", "package", "node", "PUs/core", "PUs", "siblings"});
  for (std::size_t first = 0; first < t.cores.size();) {
    std::size_t last = first;
    int64_t shift = 0;
    while (last + 1 < t.cores.size() && continues_run(t.cores[last], t.cores[last + 1], shift)) ++last;
    CpuSet all;
    std::string sib;
    for (std::size_t i = first; i <= last; ++i) {
      all |= t.cores[i].pus;
      // Up to three cores are listed in full; longer runs show the two ends.
      if (last - first < 3 || i == first || i == last) {
        sib += (sib.empty() ? "" : " ") + siblings(t.cores[i]);
        if (last - first >= 3 && i == first) sib += " ...";
      }
    }
    const Core& c = t.cores[first];
    tab.row({range_text(first, last), std::to_string(c.package), or_dash(c.numa), std::to_string(c.pus.count()),
             all.to_string(), sib});
    first = last + 1;
  }
  tab.render(out);
}

void devices_section(const Topology& t, std::string& out) {
  out += "\nDevices\n";
  if (t.devices.empty()) {
    out += "  none reported\n";
    return;
  }
  Table tab;
  tab.row({"kind", "name", "PCI", "id", "node", "description"});
  for (const IoDevice& d : t.devices) {
    tab.row({d.kind, d.name, or_dash(d.pci_busid), or_dash(d.vendor_device), or_dash(d.numa), d.description});
  }
  tab.render(out);
}

}  // namespace

std::string topology_to_text(const Topology& t) {
  std::string out;
  machine_section(t, out);
  numa_section(t, out);
  kinds_section(t, out);
  l3_section(t, out);
  cores_section(t, out);
  devices_section(t, out);
  return out;
}

}  // namespace mk::tools
