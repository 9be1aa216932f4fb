// DOC: the mkctl command table: one function per verb, each in
// commands/<verb>.cc (kvmtool style). main.cc dispatches on the first word.
#pragma once

#include "context.h"

namespace mkctl {

using CommandFn = int (*)(Context&);

struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};

int cmd_topology(Context&);
int cmd_init(Context&);
int cmd_create(Context&);
int cmd_delete(Context&);
int cmd_plan(Context&);
int cmd_show(Context&);
int cmd_host(Context&);
int cmd_load(Context&);
int cmd_start(Context&);
int cmd_stop(Context&);
int cmd_ping(Context&);
int cmd_console(Context&);
int cmd_top(Context&);
int cmd_update(Context&);
int cmd_cpu(Context&);

// The table, in the order `mkctl --help` lists it.
const Command* commands(std::size_t& count);

}  // namespace mkctl
