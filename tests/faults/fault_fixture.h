// The fixture of the fault-injection tests: a KV instance (kv_instance_fixture.h)
// whose daemon can be restarted with a given MKERNEL_FAULT (mkernel/fault.h).
#pragma once

#include "../tools/kv_instance_fixture.h"
#include "census.h"  // tools/soak: mk::soak::Census

namespace {

using mk::soak::Census;
using mk::soak::take_census;

class FaultyDaemon : public KvInstance {
 protected:
  void TearDown() override {
    ::unsetenv("MKERNEL_FAULT");
    KvInstance::TearDown();
  }
  // The daemon is SIGKILLed and the next mkctl command starts a new one,
  // with MKERNEL_FAULT=spec (or none): it adopts the running instances.
  void restart_daemon(const std::string& spec) {
    pid_t d = daemon_pid();
    if (d > 0 && ::kill(d, SIGKILL) == 0) ::waitpid(d, nullptr, 0);
    for (int i = 0; i < 200 && daemon_pid() > 0; ++i) std::this_thread::sleep_for(10ms);
    if (spec.empty()) {
      ::unsetenv("MKERNEL_FAULT");
    } else {
      ::setenv("MKERNEL_FAULT", spec.c_str(), 1);
    }
    CliRun s = run("show");
    ASSERT_EQ(s.code, 0) << s.err;
    ASSERT_GT(daemon_pid(), 0);
  }
};

}  // namespace
