// DOC: JSON forms of the partition's values (Boost.JSON; tools/ only).
//
// What this is: one encoding of Pool, Instance and Plan used in three places:
// the state file (state_store.cc), `--json` output of every mkctl verb, and
// (issue #4) the control protocol between mkctl and mkerneld. Decoding
// treats its input as untrusted: every field is type- and range-checked and
// errors are EBADMSG with the JSON path of the bad field.
#pragma once

#include <boost/json.hpp>

#include "mk/result.h"
#include "mkernel/partition.h"
#include "mkernel/planner.h"

namespace mk::tools {

boost::json::object to_json(const Pool& p);
boost::json::object to_json(const Instance& i);
// to_json(i) plus the lifecycle records (image, runtime, last_exit): the
// state file's form and `mkctl show --json`.
boost::json::object instance_to_json(const Instance& i);
boost::json::object to_json(const Plan& p);
boost::json::array warnings_to_json(const std::vector<std::string>& w);

Result<Pool> pool_from_json(const boost::json::value& v);
Result<Instance> instance_from_json(const boost::json::value& v);
// The "runtime" object of an instance (also the successor in an update journal).
boost::json::object runtime_to_json(const RuntimeRecord& r);
Result<RuntimeRecord> runtime_from_json(const boost::json::value& v);

}  // namespace mk::tools
