// The control socket (see server.h).
#include "server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstdarg>
#include <cstdio>

#include "rpc_protocol.h"

namespace mkerneld {

namespace asio = boost::asio;
namespace rpc = mk::tools::rpc;
using stream = asio::local::stream_protocol;

void log(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "mkerneld[%d]: %s\n", ::getpid(), buf);
  std::fflush(stderr);
}

class Server::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& s, stream::socket sock)
      : server_(s), count_(s.sessions_), sock_(std::move(sock)), timer_(sock_.get_executor()) {
    ++*count_;
  }
  // Sessions may outlive the Server inside a stopped io_context: the count
  // is shared, the Server is only touched from handlers that run.
  ~Session() { --*count_; }

  void start() {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      refuse(mk::errno_error("cannot read peer credentials"), "", /*drain=*/true);
      return;
    }
    if (cred.uid != 0 && cred.uid != ::geteuid()) {
      log("refused a connection from uid %u (pid %d): only root and uid %u may control this daemon", cred.uid,
          cred.pid, ::geteuid());
      refuse(MK_FAIL(EACCES, "permission denied", "uid %u may not control mkerneld (pid %d, owner uid %u)", cred.uid,
                     ::getpid(), ::geteuid()),
             "run mkctl as root or as the daemon's user, or use your own MKERNEL_RUNTIME_DIR", /*drain=*/true);
      return;
    }
    if (*count_ > kMaxConnections) {
      refuse(MK_FAIL(EAGAIN, "too many connections", "%zu clients are connected", kMaxConnections), "try again");
      return;
    }
    read();
  }

 private:
  // One failure response, then close. With `drain` (a refusal at accept,
  // before the client's request was read) the connection is not closed at
  // once: the client writes its request after connect(), and a socket
  // closed under it fails that write with EPIPE, so the client reports
  // "cannot send to mkerneld: Broken pipe" and never reads the refusal. The
  // send side is shut down instead and what the client sends is read and
  // dropped until it closes, for at most kDrainTime and a maximal request.
  void refuse(const mk::Error& e, std::string hint, bool drain = false) {
    out_ = rpc::encode_response(rpc::Response::failure(e, std::move(hint))) + "\n";
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this(), drain](const boost::system::error_code& ec, std::size_t) {
                        if (ec || !drain) return;
                        boost::system::error_code ignored;
                        self->sock_.shutdown(stream::socket::shutdown_send, ignored);
                        self->timer_.expires_after(kDrainTime);
                        self->timer_.async_wait([weak = self->weak_from_this()](const boost::system::error_code& tec) {
                          auto s = weak.lock();
                          if (tec || !s) return;
                          boost::system::error_code ig;
                          s->sock_.close(ig);
                        });
                        self->drain(0);
                      });
  }
  void drain(std::size_t so_far) {
    in_.resize(4096);
    sock_.async_read_some(asio::buffer(in_), [self = shared_from_this(), so_far](const boost::system::error_code& ec,
                                                                                  std::size_t n) {
      if (ec || so_far + n > rpc::kMaxRequestBytes + 1) {
        self->timer_.cancel();
        boost::system::error_code ignored;
        self->sock_.close(ignored);
        return;
      }
      self->drain(so_far + n);
    });
  }
  static constexpr std::chrono::milliseconds kDrainTime{1000};

  void read() {
    // A request must arrive whole within the timeout; the wait holds only a
    // weak reference so it never keeps a finished session alive.
    timer_.expires_after(server_.request_timeout_);
    // The generation tells a stale expiry (already queued when the request
    // completed) from the current one.
    timer_.async_wait([weak = weak_from_this(), gen = ++timer_gen_](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || gen != self->timer_gen_) return;
      log("closed a connection that sent no complete request in %lld ms",
          static_cast<long long>(self->server_.request_timeout_.count()));
      boost::system::error_code ignored;
      self->sock_.close(ignored);
    });
    // The limit counts the newline; one byte more than a maximal request
    // means the request is too long.
    asio::async_read_until(sock_, asio::dynamic_buffer(in_, rpc::kMaxRequestBytes + 1), '\n',
                           [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                             self->on_read(ec, n);
                           });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    timer_.cancel();
    ++timer_gen_;
    if (ec == asio::error::not_found) {
      log("refused a request over %zu bytes", rpc::kMaxRequestBytes);
      refuse(MK_FAIL(EMSGSIZE, "request too large", "over %zu bytes", rpc::kMaxRequestBytes), "");
      return;
    }
    if (ec) {
      // EOF between requests is the normal end; a partial line without its
      // newline is dropped (the client went away mid-request).
      return;
    }
    std::string line = in_.substr(0, n - 1);
    in_.erase(0, n);
    rpc::Response r;
    auto action = rpc::parse_request(line);
    if (!action) {
      log("bad request: %s", action.error().to_string().c_str());
      r = rpc::Response::failure(action.error(), "see docs/daemon.md for the protocol");
    } else {
      // Progress frames go out synchronously while the action runs (the
      // loop is busy with it anyway); a client that went away just misses them.
      auto progress = [this](const boost::json::object& p) {
        const std::string frame = rpc::encode_progress(p) + "\n";
        boost::system::error_code ignored;
        asio::write(sock_, asio::buffer(frame), ignored);
      };
      const int fd = sock_.native_handle();
      server_.controller_.set_client_gone([fd] { return client_hung_up(fd); });
      r = server_.controller_.handle(*action, progress);
      server_.controller_.set_client_gone({});
      if (rpc::changes_partition(*action) || !r.ok)
        log("%s: %s", rpc::action_name(*action), r.ok ? "done" : r.error.to_string().c_str());
    }
    out_ = rpc::encode_response(r) + "\n";
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this()](const boost::system::error_code& wec, std::size_t) {
                        if (self->server_.controller_.stop_requested()) {
                          // Kept open until the Server is destroyed, after
                          // the socket is gone and the lock released: the
                          // client's EOF then means "a new daemon may start".
                          self->server_.stopping_ = self;
                          self->server_.on_stop_();
                          return;
                        }
                        if (!wec) self->read();
                      });
  }

  Server& server_;
  std::shared_ptr<std::size_t> count_;
  stream::socket sock_;
  asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  std::string in_, out_;
};

Server::Server(asio::io_context& io, std::string path, Controller& c, std::function<void()> on_stop)
    : io_(io), path_(std::move(path)), controller_(c), on_stop_(std::move(on_stop)), acceptor_(io) {}

Server::~Server() { close(); }

mk::Result<std::unique_ptr<Server>> Server::create(asio::io_context& io, std::string socket_path,
                                                   Controller& controller, std::function<void()> on_stop,
                                                   std::chrono::milliseconds request_timeout) {
  std::unique_ptr<Server> s(new Server(io, socket_path, controller, std::move(on_stop)));
  s->request_timeout_ = request_timeout;
  if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
    int e = errno;
    return mk::Error(e, "cannot remove a stale control socket").set_detail("%s: %s", socket_path.c_str(), strerror(e));
  }
  boost::system::error_code ec;
  s->acceptor_.open(stream(), ec);
  if (!ec) {
    // Never world-connectable, not even between bind and chmod. The daemon
    // is still single-threaded here, so the process-wide umask is safe.
    mode_t old = ::umask(0177);
    s->acceptor_.bind(stream::endpoint(socket_path), ec);
    ::umask(old);
  }
  if (!ec) s->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return MK_FAIL(ec.value(), "cannot listen on the control socket", "%s: %s", socket_path.c_str(),
                   ec.message().c_str());
  struct stat st;
  if (::chmod(socket_path.c_str(), 0600) != 0 || ::stat(socket_path.c_str(), &st) != 0) {
    int e = errno;
    return mk::Error(e, "cannot secure the control socket").set_detail("%s: %s", socket_path.c_str(), strerror(e));
  }
  s->dev_ = st.st_dev;
  s->ino_ = st.st_ino;
  return s;
}

void Server::start() { accept(); }

void Server::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream::socket sock) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<Session>(*this, std::move(sock))->start();
    else log("accept: %s", ec.message().c_str());
    accept();
  });
}

void Server::close() {
  if (!acceptor_.is_open()) return;
  boost::system::error_code ec;
  acceptor_.close(ec);
  // Remove the file only if it is still the one we bound (a successor daemon
  // may already have replaced it).
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) ::unlink(path_.c_str());
}

}  // namespace mkerneld
