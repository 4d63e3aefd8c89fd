// tests/redis/url_test.cpp: parse_url, table-driven: each URL with the Endpoint it must give, or the
// words its std::invalid_argument must contain. Every error parse_url documents has a row.
#include <gtest/gtest.h>

#include <optional>
#include <stampede/redis/client.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using stampede::redis::Endpoint;
using stampede::redis::parse_url;

Endpoint tcp(std::string host, int port = 6379, int db = 0, std::string user = "",
             std::string password = "") {
  Endpoint e;
  e.host = std::move(host);
  e.port = port;
  e.db = db;
  e.user = std::move(user);
  e.password = std::move(password);
  return e;
}

Endpoint unix_socket(std::string path, int db = 0, std::string user = "", std::string password = "") {
  Endpoint e;
  e.unix_socket = true;
  e.path = std::move(path);
  e.db = db;
  e.user = std::move(user);
  e.password = std::move(password);
  return e;
}

struct Good {
  const char* url;
  Endpoint expected;
};

const std::vector<Good> kGood = {
    {"redis://127.0.0.1", tcp("127.0.0.1")},
    {"redis://cache.local:6380/3", tcp("cache.local", 6380, 3)},
    {"redis://h:1/", tcp("h", 1)},
    {"redis://h:65535/1048576", tcp("h", 65535, 1 << 20)},
    // user and password forms
    {"redis://alice:s%3Acret@cache.local:6380/3", tcp("cache.local", 6380, 3, "alice", "s:cret")},
    {"redis://:pw@h", tcp("h", 6379, 0, "", "pw")},
    {"redis://secret@h", tcp("h", 6379, 0, "", "secret")},  // password only, as redis-py reads it
    {"redis://a:b:c@h", tcp("h", 6379, 0, "a", "b:c")},     // the first ':' ends the user
    {"redis://u:p@ss@h", tcp("h", 6379, 0, "u", "p@ss")},   // the last '@' ends the password
    // %-escapes
    {"redis://user%40corp:p%40ss%2F%25@h", tcp("h", 6379, 0, "user@corp", "p@ss/%")},
    {"redis://:%e2%82%ac@h", tcp("h", 6379, 0, "", "\xe2\x82\xac")},
    // IPv6
    {"redis://[::1]", tcp("::1")},
    {"redis://[::1]:7000/2", tcp("::1", 7000, 2)},
    {"redis://u:p@[2001:db8::7]:6390", tcp("2001:db8::7", 6390, 0, "u", "p")},
    // unix sockets
    {"unix:///run/redis.sock", unix_socket("/run/redis.sock")},
    {"unix:///run/redis.sock?db=2", unix_socket("/run/redis.sock", 2)},
    {"unix://:pw@/run/redis.sock", unix_socket("/run/redis.sock", 0, "", "pw")},
    {"unix://u:p%40@/tmp/r.sock?db=15", unix_socket("/tmp/r.sock", 15, "u", "p@")},
};

struct Bad {
  const char* url;
  const char* says;
};

const std::vector<Bad> kBad = {
    {"", "scheme must be redis:// or unix://"},
    {"http://h", "scheme must be redis:// or unix://"},
    {"REDIS://h", "scheme must be redis:// or unix://"},
    {"redis://", "no host"},
    {"redis://:6379", "no host"},
    {"redis://u:p@", "no host"},
    {"redis://[]:6379", "no host"},
    {"redis://h:0", "bad port '0'"},
    {"redis://h:65536", "bad port '65536'"},
    {"redis://h:x", "bad port 'x'"},
    {"redis://h:", "bad port ''"},
    {"redis://h:-1", "bad port '-1'"},
    {"redis://h/db", "bad database number 'db'"},
    {"redis://h/-1", "bad database number '-1'"},
    {"redis://h/1048577", "bad database number '1048577'"},
    {"redis://a%zz@h", "bad %-escape"},
    {"redis://a%4@h", "truncated %-escape"},
    {"redis://:pw%@h", "truncated %-escape"},
    {"redis://[::1", "unclosed '[' in host"},
    {"redis://[::1]x", "junk after ']'"},
    {"redis://[::1]:0", "bad port '0'"},
    {"unix://", "no socket path"},
    {"unix:///", "no socket path"},
    {"unix://host/path", "a unix URL has no host"},
    {"unix:///s?database=1", "only ?db=N is understood"},
    {"unix:///s?db=x", "bad database number 'x'"},
    {"unix:///s?db=", "bad database number ''"},
};

TEST(ParseUrl, EveryGoodUrlGivesItsEndpoint) {
  for (const Good& g : kGood) {
    SCOPED_TRACE(g.url);
    Endpoint got;
    ASSERT_NO_THROW(got = parse_url(g.url));
    EXPECT_EQ(got.unix_socket, g.expected.unix_socket);
    EXPECT_EQ(got.host, g.expected.host);
    EXPECT_EQ(got.port, g.expected.port);
    EXPECT_EQ(got.path, g.expected.path);
    EXPECT_EQ(got.user, g.expected.user);
    EXPECT_EQ(got.password, g.expected.password);
    EXPECT_EQ(got.db, g.expected.db);
  }
}

TEST(ParseUrl, EveryBadUrlIsAnInvalidArgumentSayingWhatIsWrong) {
  for (const Bad& b : kBad) {
    SCOPED_TRACE(b.url);
    try {
      (void)parse_url(b.url);
      ADD_FAILURE() << "parsed";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(b.says), std::string::npos) << e.what();
    }
  }
}

}  // namespace

namespace {

TEST(ParseUrl, AnErrorMessageNeverShowsThePassword) {
  const char* const kUrls[] = {
      "redis://:s3cret-pw@localhost:99999",  // bad port
      "redis://app:s3cret-pw@[::1",          // unclosed bracket
      "redis://app:s3cret-pw@host/notadb",   // bad database
      "unix://app:s3cret-pw@host/tmp/sock",  // a unix URL with a host
      "unix://:s3cret-pw@/tmp/sock?db=x",    // bad database
      "redis://:s3cret-pw%zz@host",          // bad %-escape in the password itself
  };
  for (const char* url : kUrls) {
    SCOPED_TRACE(url);
    try {
      (void)stampede::redis::parse_url(url);
      ADD_FAILURE() << "parsed";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
