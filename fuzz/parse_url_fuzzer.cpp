// fuzz/parse_url_fuzzer.cpp: stampede::redis::parse_url on arbitrary bytes.
//
// parse_url must return or throw std::invalid_argument (any other exception escapes and libFuzzer
// reports it), never crash, and what it returns must be within the documented ranges of Endpoint.
//
//   build/fuzz/fuzz/parse_url_fuzzer fuzz/corpus/parse_url_fuzzer -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "stampede/redis/client.hpp"

namespace {

[[noreturn]] void violation(std::string_view url, const char* what, const stampede::redis::Endpoint& ep) {
  std::fprintf(stderr,
               "parse_url_fuzzer: %s\n  url (%zu bytes): '%.*s'\n  endpoint: unix=%d host='%s' port=%d "
               "path='%s' db=%d\n",
               what, url.size(), static_cast<int>(url.size()), url.data(), ep.unix_socket ? 1 : 0,
               ep.host.c_str(), ep.port, ep.path.c_str(), ep.db);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view url(reinterpret_cast<const char*>(data), size);
  stampede::redis::Endpoint ep;
  try {
    ep = stampede::redis::parse_url(url);
  } catch (const std::invalid_argument&) {
    return 0;  // the documented way to reject a URL
  }
  if (ep.db < 0) violation(url, "negative database number", ep);
  if (ep.unix_socket) {
    if (!url.starts_with("unix://")) violation(url, "a unix endpoint from a URL without unix://", ep);
    if (ep.path.size() < 2 || ep.path.front() != '/') violation(url, "unix socket path not absolute", ep);
  } else {
    if (!url.starts_with("redis://")) violation(url, "a TCP endpoint from a URL without redis://", ep);
    if (ep.host.empty()) violation(url, "empty host", ep);
    if (ep.port < 1 || ep.port > 65535) violation(url, "port outside 1..65535", ep);
    if (!ep.path.empty()) violation(url, "a TCP endpoint with a socket path", ep);
  }
  if (!ep.password.empty() || !ep.user.empty()) {
    // Credentials come only from a userinfo part, which ends with '@'.
    if (url.find('@') == std::string_view::npos) violation(url, "credentials without '@'", ep);
  }
  return 0;
}
