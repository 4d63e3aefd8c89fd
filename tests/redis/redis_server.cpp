#include "redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

}  // namespace

RedisServer::RedisServer(std::vector<std::string> extra_args) : extra_args_(std::move(extra_args)) {
  port_ = free_port();
  start();
}

RedisServer::~RedisServer() { kill(); }

void RedisServer::start() {
  if (pid_ > 0) return;
  std::vector<std::string> argv = {
      "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
      "--appendonly", "no",     "--protected-mode",    "no"};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  pid_ = spawn(argv, nullptr, nullptr, true);
  // Wait until it accepts connections (a readiness check, bounded; not a timing assertion).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (up) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("redis-server exited at start (is it installed? port " +
                               std::to_string(port_) + ")");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill();
      throw std::runtime_error("redis-server did not start listening");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
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
