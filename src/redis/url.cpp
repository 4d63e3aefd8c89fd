#include "stampede/redis/url.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>

namespace stampede::redis {
namespace {

// `url` as a message may show it: the password of its userinfo, if any, becomes "***". (The
// userinfo ends at the last '@' before the first '/' of the authority.)
std::string redacted(std::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const std::size_t start = scheme + 3;
  const std::size_t end = std::min(url.find('/', start), url.size());
  const std::size_t at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  const std::size_t colon = url.substr(0, at).find(':', start);
  std::string out(url.substr(0, start));
  if (colon != std::string_view::npos) {
    out.append(url.substr(start, colon - start)).append(":***");
  } else {
    out.append("***");  // "redis://secret@host": the userinfo is the password
  }
  out.append(url.substr(at));
  return out;
}

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
  throw std::invalid_argument("stampede::redis: bad URL '" + redacted(url) + "': " + why);
}

std::string percent_decode(std::string_view url, std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= s.size()) bad_url(url, "truncated %-escape");
    auto [ptr, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16);
    if (ec != std::errc() || ptr != s.data() + i + 3) bad_url(url, "bad %-escape");
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

int parse_int(std::string_view url, std::string_view s, const char* what, int lo, int hi) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || value < lo || value > hi) {
    bad_url(url, std::string("bad ") + what + " '" + std::string(s) + "'");
  }
  return value;
}

// Splits "[[user]:password@]rest" off the front of `s`.
void parse_userinfo(std::string_view url, std::string_view& s, Endpoint& ep) {
  const auto at = s.rfind('@');
  if (at == std::string_view::npos) return;
  std::string_view info = s.substr(0, at);
  s.remove_prefix(at + 1);
  const auto colon = info.find(':');
  if (colon == std::string_view::npos) {
    // "redis://secret@host" is what redis-py reads as a password-only URL as well.
    ep.password = percent_decode(url, info);
  } else {
    ep.user = percent_decode(url, info.substr(0, colon));
    ep.password = percent_decode(url, info.substr(colon + 1));
  }
}

}  // namespace

Endpoint parse_url(std::string_view url) {
  Endpoint ep;
  std::string_view s = url;
  if (s.starts_with("redis://")) {
    s.remove_prefix(8);
    const auto slash = s.find('/');
    std::string_view authority = s.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : s.substr(slash + 1);
    parse_userinfo(url, authority, ep);
    if (authority.starts_with("[")) {
      const auto close = authority.find(']');
      if (close == std::string_view::npos) bad_url(url, "unclosed '[' in host");
      ep.host = std::string(authority.substr(1, close - 1));
      authority.remove_prefix(close + 1);
      if (!authority.empty()) {
        if (authority[0] != ':') bad_url(url, "junk after ']'");
        ep.port = parse_int(url, authority.substr(1), "port", 1, 65535);
      }
    } else {
      const auto colon = authority.rfind(':');
      ep.host = std::string(authority.substr(0, colon));
      if (colon != std::string_view::npos)
        ep.port = parse_int(url, authority.substr(colon + 1), "port", 1, 65535);
    }
    if (ep.host.empty()) bad_url(url, "no host");
    if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
    if (!path.empty()) ep.db = parse_int(url, path, "database number", 0, 1 << 20);
  } else if (s.starts_with("unix://")) {
    s.remove_prefix(7);
    ep.unix_socket = true;
    const auto slash = s.find('/');
    if (slash == std::string_view::npos) bad_url(url, "no socket path");
    std::string_view authority = s.substr(0, slash);
    parse_userinfo(url, authority, ep);
    if (!authority.empty()) bad_url(url, "a unix URL has no host: use unix:///path/to/socket");
    std::string_view path = s.substr(slash);
    if (const auto q = path.find('?'); q != std::string_view::npos) {
      std::string_view query = path.substr(q + 1);
      path = path.substr(0, q);
      if (!query.starts_with("db=")) bad_url(url, "only ?db=N is understood");
      ep.db = parse_int(url, query.substr(3), "database number", 0, 1 << 20);
    }
    if (path.size() < 2) bad_url(url, "no socket path");
    ep.path = std::string(path);
  } else {
    bad_url(url, "scheme must be redis:// or unix://");
  }
  return ep;
}

std::string to_string(const Endpoint& endpoint) {
  if (endpoint.unix_socket) return endpoint.path;
  const bool v6 = endpoint.host.find(':') != std::string::npos;
  return (v6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
}

}  // namespace stampede::redis
