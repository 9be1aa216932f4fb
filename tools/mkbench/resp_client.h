// DOC: a minimal blocking RESP client for the benchmarks that drive the
// mk-kernel KV service (mkbench update, mkbench update --staged): commands,
// pipelined replies, connections on 127.0.0.1.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mkbench {

// One command in RESP form.
std::string resp(std::initializer_list<std::string_view> args);
bool send_all(int fd, std::string_view bytes);
// Reads until `count` occurrences of `token` were seen (replies to pipelined
// commands that all answer `token`). False on EOF/error or any other reply.
bool expect_replies(int fd, std::string_view token, std::size_t count);
// GET key: the bulk string's length, or -1.
long get_length(int fd, const std::string& key);
// A TCP connection to 127.0.0.1:port (retried for 2 s; TCP_NODELAY, 10 s
// receive timeout), or -1.
int connect_to(uint16_t port);
// A loopback port nobody listens on now, 0 when none could be found.
uint16_t free_port();
// `n` clients, each answered PONG once. Returns: EIO naming the one that failed.
mk::Result<std::vector<int>> connect_clients(uint16_t port, uint64_t n);

}  // namespace mkbench
