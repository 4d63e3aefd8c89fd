#include "redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace redis_test {

std::string self_path;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// fork + exec with the child's death tied to this thread; stdin/stdout optionally piped.
pid_t spawn(const std::vector<std::string>& argv, int* child_stdin, int* child_stdout, bool quiet) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  if (child_stdin && ::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (child_stdout && ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (child_stdin) ::dup2(in[0], 0);
    if (child_stdout) ::dup2(out[1], 1);
    if (quiet) {
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        if (!child_stdout) ::dup2(devnull, 1);
        ::dup2(devnull, 2);
      }
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  if (child_stdin) {
    ::close(in[0]);
    *child_stdin = in[1];
  }
  if (child_stdout) {
    ::close(out[1]);
    *child_stdout = out[0];
  }
  return pid;
}

// Sends PING on a connected socket. @return true if the server answered it: +PONG, or an error
// other than -LOADING (a server with requirepass answers -NOAUTH, which also means "serving").
bool answers_ping(int fd) {
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  static constexpr char kPing[] = "*1\r\n$4\r\nPING\r\n";
  if (::send(fd, kPing, sizeof kPing - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof kPing - 1))
    return false;
  std::string reply;
  char buf[256];
  while (reply.find("\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  return reply.starts_with("+PONG") || (reply.starts_with("-") && !reply.starts_with("-LOADING"));
}

bool answers_ping_tcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && answers_ping(fd);
  ::close(fd);
  return ok;
}

bool answers_ping_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && answers_ping(fd);
  ::close(fd);
  return ok;
}

}  // namespace

RedisServer::RedisServer(std::vector<std::string> extra_args) : extra_args_(std::move(extra_args)) {
  // free_port() releases the port before redis-server binds it, so another test process (ctest -j)
  // may take it meanwhile: the server then exits at start, and a fresh port is tried.
  for (int attempt = 1;; ++attempt) {
    port_ = free_port();
    if (launch()) return;
    if (attempt == 5) {
      throw std::runtime_error("redis-server exited at start 5 times (is it installed? last port " +
                               std::to_string(port_) + ")");
    }
  }
}

RedisServer::~RedisServer() { kill(); }

void RedisServer::start() {
  if (pid_ > 0) return;
  if (!launch()) {
    throw std::runtime_error("redis-server exited at start (port " + std::to_string(port_) + " taken?)");
  }
}

bool RedisServer::launch() {
  std::vector<std::string> argv = {
      "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
      "--appendonly", "no",     "--protected-mode",    "no"};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  pid_ = spawn(argv, nullptr, nullptr, true);
  // Ready means: every endpoint a test may use answers a PING. Redis binds its TCP port before it
  // creates the unix socket, and accepts connections (into the backlog) before it serves them.
  // A readiness check, bounded; not a timing assertion.
  const std::string unix_path = unix_socket();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    if (answers_ping_tcp(port_) && (unix_path.empty() || answers_ping_unix(unix_path))) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill();
      throw std::runtime_error("redis-server did not answer PING on every endpoint within 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string RedisServer::unix_socket() const {
  for (std::size_t i = 0; i + 1 < extra_args_.size(); ++i) {
    if (extra_args_[i] == "--unixsocket") return extra_args_[i + 1];
  }
  return {};
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void RedisServer::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RedisServer::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string RedisServer::url(const std::string& password) const {
  return "redis://" + (password.empty() ? std::string() : ":" + password + "@") +
         "127.0.0.1:" + std::to_string(port_);
}

namespace {
RedisServer* g_shared = nullptr;

class SharedServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { g_shared = new RedisServer(); }
  void TearDown() override {
    delete g_shared;
    g_shared = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new SharedServerEnvironment);
}  // namespace

RedisServer& shared_server() {
  if (!g_shared) throw std::runtime_error("the shared redis-server is not running");
  return *g_shared;
}

std::shared_ptr<stampede::redis::Client> shared_client() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  static std::shared_ptr<stampede::redis::Client> client;
  static int port = 0;
  if (!client || port != shared_server().port()) {
    // Generous timeouts: under TSan on a loaded 2-core CI machine a round trip can take longer
    // than the 1 s defaults, and a timed-out lock attempt makes fail_open skip the lock, which
    // the suites would (rightly) report as a broken stampede guarantee.
    stampede::redis::ClientOptions options;
    options.connect_timeout = std::chrono::seconds(10);
    options.command_timeout = std::chrono::seconds(10);
    options.borrow_timeout = std::chrono::seconds(10);
    client = stampede::redis::Client::connect(shared_server().url(), options);
    port = shared_server().port();
  }
  return client;
}

std::string unique_prefix() {
  static std::atomic<int> n{0};
  return "t" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1)) + ":";
}

// ---- Child -------------------------------------------------------------------------------------

Child::Child(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {self_path, "--child"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn(argv, &in_, &out_, false);
}

Child::~Child() {
  if (in_ >= 0) ::close(in_);
  if (out_ >= 0) ::close(out_);
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

void Child::send(const std::string& line) {
  const std::string data = line + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(in_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // the child is gone; its exit status tells
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string Child::read_line() {
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    char chunk[4096];
    const ssize_t n = ::read(out_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string rest = std::move(buffer_);
      buffer_.clear();
      return rest;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

void Child::signal(int sig) { ::kill(pid_, sig); }

int Child::wait() {
  if (reaped_) return -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace redis_test
