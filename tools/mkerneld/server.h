// DOC: mkerneld::Server — the control socket (Boost.Asio, UNIX stream).
//
// What this is: the daemon's only door. It listens on <dir>/control.sock
// (mode 0600, created under umask 0177 so it is never wider, even for an
// instant), checks every connection's peer credentials, reads requests as
// lines, has rpc::parse_request validate them, lets the Controller run them
// and writes one response line per request.
//
// Per connection:
//   1. accept; SO_PEERCRED: uid 0 or the daemon's own uid may talk, anyone
//      else gets one EACCES failure response, is logged, and is closed;
//   2. read up to kMaxRequestBytes until '\n'; parse; handle; write;
//   3. repeat until the client closes (mkctl sends one request).
// Unhappy paths, each answered with a failure response (errno, error,
// message, hint) and never a crash: garbage or a wrong shape (EBADMSG),
// unknown action (EOPNOTSUPP), unknown field or wrong type (EINVAL), a line
// over the limit (EMSGSIZE; the connection is then closed since the stream
// cannot be resynchronized), more than kMaxConnections at once (EAGAIN).
// A connection that leaves a request unfinished, or sits idle between
// requests, for longer than the request timeout is closed (logged), so a
// stuck client cannot hold one of the kMaxConnections slots forever.
// After a host-stop response is written the server calls on_stop; that
// connection stays open until the Server is destroyed, so the client sees
// EOF only once the daemon has let go of the runtime directory.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "controller.h"
#include "mk/result.h"

namespace mkerneld {

class Server {
 public:
  static constexpr std::size_t kMaxConnections = 64;
  static constexpr std::chrono::milliseconds kRequestTimeout{30'000};

  // Binds and listens (a stale socket file from a killed daemon is replaced:
  // the caller holds the daemon lock, so no live daemon can own it).
  static mk::Result<std::unique_ptr<Server>> create(boost::asio::io_context& io, std::string socket_path,
                                                    Controller& controller, std::function<void()> on_stop,
                                                    std::chrono::milliseconds request_timeout = kRequestTimeout);
  ~Server();

  void start();
  // Stops accepting and removes the socket file (only if it is still ours).
  void close();

 private:
  class Session;
  Server(boost::asio::io_context& io, std::string path, Controller& c, std::function<void()> on_stop);
  void accept();

  boost::asio::io_context& io_;
  std::string path_;
  Controller& controller_;
  std::function<void()> on_stop_;
  std::chrono::milliseconds request_timeout_ = kRequestTimeout;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<Session> stopping_;  // the host-stop client, see server.cc
  std::shared_ptr<std::size_t> sessions_ = std::make_shared<std::size_t>(0);
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// One log line on stderr: "mkerneld[PID]: message".
void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace mkerneld
