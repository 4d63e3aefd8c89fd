// tests/consumer/redis_main.cpp: links the installed Redis backend (stampede::redis, and through it
// hiredis) without a server: a URL parses, and connecting where nothing listens (127.0.0.1 port 1)
// throws stampede::backend_error. Exit 0 = pass.
#include <cstdio>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <stdexcept>
#include <string>

namespace {
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
}  // namespace

int main() {
  const stampede::redis::Endpoint e = stampede::redis::parse_url("redis://127.0.0.1:6380/2");
  check(e.host == "127.0.0.1" && e.port == 6380, "parse_url reads host and port");
  check(stampede::redis::to_string(e) == "127.0.0.1:6380", "to_string names the endpoint");
  bool bad_url = false;
  try {
    (void)stampede::redis::parse_url("http://h");
  } catch (const std::invalid_argument&) {
    bad_url = true;
  }
  check(bad_url, "parse_url throws std::invalid_argument for a bad URL");
  const stampede::redis::Script script("return 1");
  check(script.sha1().empty(), "a Script knows no digest before a server named it");

  bool refused = false;
  try {
    (void)stampede::redis::Client::connect("redis://127.0.0.1:1");
  } catch (const stampede::backend_error& err) {
    refused = true;
    std::printf("      (%s)\n", err.what());
  }
  check(refused, "connecting where nothing listens throws backend_error");

  std::printf("consumer_redis: %s\n", failures == 0 ? "PASS" : "FAIL");
  return failures == 0 ? 0 : 1;
}
