// DOC: mk::IrqSteering — keeping device interrupts off the CPUs of running
// instances (issue #7, isolation enforcement; docs/isolation.md).
//
// What this is: the process backend cannot stop the host kernel from
// delivering device interrupts to an instance's CPUs, but it can ask it to
// deliver them elsewhere: every IRQ listed under /proc/irq/N gets an
// smp_affinity_list without the CPUs of the running instances (the host's
// CPUs instead when nothing else is left), and /proc/irq/default_smp_affinity
// (IRQs set up later) the same. The original affinity of every IRQ touched
// is remembered, in memory and in a state file written atomically, so the
// last instance stopping (or a daemon restarted after a crash) puts every
// IRQ back where it was. All file access goes through the injectable SysRoot.
//
// Place in the boot flow: mkerneld, after an instance started (and after it
// stopped, crashed or was deleted, and when a restarted daemon adopted its
// instances): apply(CPUs of every running instance, host CPUs), then
// report(instance CPUs) -> the instance's "irq steering" guarantee line.
//
// Happy path:
//   1. load() reads the state file, if any (originals of a previous daemon).
//   2. apply(reserved, host): lists the IRQs (names from /proc/interrupts),
//      computes each one's target (its original affinity minus `reserved`, or
//      `host` when that leaves nothing; its original when `reserved` is
//      empty), saves the originals it is about to change, then writes
//      smp_affinity_list and reads it (and effective_affinity_list) back.
//   3. report(cpus): "N of M IRQs on cpus X moved to cpus H (T IRQs in all)".
//   4. apply(empty, ...) restores every original and removes the file.
//
// Unhappy paths (none fails the instance's start; each is reported):
//   1. The kernel refuses the write (EIO: a managed IRQ, whose affinity the
//      kernel sets per queue; or a per-CPU IRQ): the IRQ is "not movable",
//      reported by number and name with the errno.
//   2. The write is taken but smp_affinity_list reads back otherwise:
//      "not movable" with what the kernel kept. An effective_affinity_list
//      still on reserved CPUs after a short wait is "pending": x86 without
//      interrupt remapping moves an IRQ when it next fires (seen on this
//      VM), so it counts as moved and is named as pending.
//   3. No /proc/irq (a container, no permission): apply() fails with the
//      errno naming the path; the daemon reports steering as not in force.
//   4. The state file cannot be written: apply() fails before any IRQ is
//      changed (an original never saved could not be restored).
//   5. A saved IRQ no longer exists (device removed): forgotten.
//
// Returns: load: EBADMSG (a state file that does not parse), errno of read.
// apply: errno of listing /proc/irq, of writing the state file, of writing
// default_smp_affinity; per-IRQ refusals are not errors (report()).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/guarantee.h"
#include "mkernel/sysroot.h"

namespace mk {

// One IRQ as /proc shows it.
struct IrqLine {
  int irq = -1;
  std::string name;                // actions from /proc/interrupts, "" if not listed
  CpuSet affinity;                 // smp_affinity_list
  std::optional<CpuSet> effective;  // effective_affinity_list, when the kernel has it
};

// Every /proc/irq/N with an smp_affinity_list, by number. Read only.
// Returns: errno of opening /proc/irq.
Result<std::vector<IrqLine>> read_irqs(const SysRoot& root);

// /proc/irq/default_smp_affinity's hex mask ("3", "ff,ffffffff") <-> CpuSet.
Result<CpuSet> parse_cpu_mask(std::string_view text);
std::string to_cpu_mask(const CpuSet& cpus);

// What steering did for one instance's CPUs.
struct IrqSteerReport {
  CpuSet cpus;               // the instance's
  CpuSet host;               // where the IRQs went when nothing else was left
  std::size_t total = 0;     // IRQs listed
  std::size_t on_cpus = 0;   // whose original affinity touched `cpus`
  std::size_t moved = 0;     // of those, now off `cpus`
  std::vector<std::pair<int, std::string>> not_movable;  // irq, "name: why"
  std::vector<std::pair<int, std::string>> pending;      // moved, effective not yet: irq, name
  bool default_steered = false;  // default_smp_affinity off `cpus`
  // "irq steering": in force when every IRQ on `cpus` moved off.
  Guarantee guarantee() const;
};

class IrqSteering {
 public:
  // state_path: where the originals are kept ("" = memory only, tests).
  IrqSteering(SysRoot root, std::string state_path)
      : root_(std::move(root)), state_path_(std::move(state_path)) {}

  // How a /proc/irq file is written (abs path as the host sees it, value).
  // Default: open(O_WRONLY|O_TRUNC) + write through the SysRoot. Tests
  // replace it to fail like the kernel does for a managed IRQ (EIO).
  using Writer = std::function<Result<void>(const std::string& abs, const std::string& value)>;
  void set_writer(Writer w) { writer_ = std::move(w); }
  // Wait up to 100 ms for effective affinities to follow (default on).
  void set_settle(bool on) { settle_ = on; }

  Result<void> load();
  Result<void> apply(const CpuSet& reserved, const CpuSet& host);
  IrqSteerReport report(const CpuSet& cpus) const;

  // Saved original affinities (irq -> cpu list), and default mask.
  const std::map<int, CpuSet>& originals() const { return original_; }
  const std::optional<CpuSet>& default_original() const { return default_original_; }
  // The CPUs steered away from by the last apply() (or, after load(), by
  // the daemon that saved the file: which instances asked for steering).
  const CpuSet& reserved() const { return reserved_; }

 private:
  Result<void> save() const;

  SysRoot root_;
  std::string state_path_;
  Writer writer_;
  bool settle_ = true;
  std::map<int, CpuSet> original_;
  std::optional<CpuSet> default_original_;
  CpuSet reserved_, host_;
  // From the last apply():
  std::vector<IrqLine> lines_;            // as read back after the writes
  std::map<int, std::string> not_movable_;  // irq -> why
  std::set<int> pending_;                   // effective affinity not yet followed
  bool default_ok_ = false;
};

}  // namespace mk
