// tests/redis/client_test.cpp: Client: AUTH/SELECT, binary-safe commands, scripts (the digest
// learned from the server, the NOSCRIPT fallback, users without SCRIPT LOAD), the pool's borrow
// timeout, and reconnecting after a restart.
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <stampede/redis/client.hpp>
#include <string>
#include <thread>

#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::redis::Client;
using stampede::redis::Reply;
using stampede::redis::Script;

TEST(Client, RejectsBadOptions) {
  EXPECT_THROW(Client::connect("redis://127.0.0.1:1", {.pool_size = 0}), std::invalid_argument);
  EXPECT_THROW(Client::connect("redis://127.0.0.1:1", {.command_timeout = std::chrono::milliseconds(-1)}),
               std::invalid_argument);
  EXPECT_THROW(Client::create("redis://127.0.0.1:1", {.keepalive_interval = std::chrono::milliseconds(-1)}),
               std::invalid_argument);
}

TEST(Client, UnreachableServerIsABackendErrorNotAHang) {
  redis_test::RedisServer server;
  const std::string url = server.url();
  server.kill();  // nothing listens on that port now
  try {
    Client::connect(url);
    FAIL() << "connect succeeded";
  } catch (const stampede::backend_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
  }
}

TEST(Client, CreateChecksUrlAndOptionsAndConnectsOnFirstUse) {
  EXPECT_THROW(Client::create("http://h"), std::invalid_argument);
  EXPECT_THROW(Client::create("redis://127.0.0.1:1", {.pool_size = 0}), std::invalid_argument);
  redis_test::RedisServer server;
  const std::string url = server.url();
  server.kill();
  auto client = Client::create(url);  // nothing listens there: not an error yet
  EXPECT_EQ(client->open_connections(), 0u);
  try {
    client->command({"PING"});
    FAIL() << "a command reached a server that is down";
  } catch (const stampede::backend_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect"), std::string::npos) << e.what();
  }
  server.start();
  EXPECT_EQ(client->command({"PING"}).str, "PONG");
}

TEST(Client, BinarySafeArgumentsAndOneMebibyteValues) {
  auto client = redis_test::shared_client();
  const std::string key = redis_test::unique_prefix() + std::string("a key\nwith\0NUL", 15);
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 256);
  EXPECT_EQ(client->command({"SET", key, big}).str, "OK");
  Reply r = client->command({"GET", key});
  ASSERT_EQ(r.type, Reply::Type::string);
  EXPECT_EQ(r.str.size(), big.size());
  EXPECT_TRUE(r.str == big);
  EXPECT_EQ(client->command({"STRLEN", key}).integer, 1 << 20);
  EXPECT_TRUE(client->command({"GET", key + "x"}).is_nil());
}

TEST(Client, ErrorRepliesAreReplyErrorsAndLeaveTheConnectionUsable) {
  auto client = redis_test::shared_client();
  const std::string key = redis_test::unique_prefix() + "s";
  client->command({"SET", key, "v"});
  try {
    client->command({"HGET", key, "f"});
    FAIL() << "no error";
  } catch (const stampede::redis::reply_error& e) {
    EXPECT_EQ(e.code(), "WRONGTYPE");
  }
  EXPECT_EQ(client->command({"GET", key}).str, "v");
}

// The number of calls of `command` (e.g. "evalsha", "script|load") the server has counted.
long long calls(Client& client, const std::string& command) {
  const std::string info = client.command({"INFO", "commandstats"}).str;
  const std::string tag = "cmdstat_" + command + ":calls=";
  const auto at = info.find(tag);
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + tag.size()));
}

TEST(Client, EvalLearnsTheScriptsDigestFromTheServerAndThenSendsOnlyTheDigest) {
  redis_test::RedisServer server;  // its own server: the test counts commands
  auto client = Client::connect(server.url());
  const Script script("return {KEYS[1], ARGV[1]}");
  EXPECT_TRUE(script.sha1().empty()) << "a digest before any server named the script";
  Reply r = client->eval(script, {"k"}, {"a"});
  ASSERT_EQ(r.type, Reply::Type::array);
  EXPECT_EQ(r.elements.at(0).str, "k");
  EXPECT_EQ(r.elements.at(1).str, "a");
  EXPECT_EQ(script.sha1(), client->command({"SCRIPT", "LOAD", script.source()}).str);
  client->command({"CONFIG", "RESETSTAT"});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(client->eval(script, {"k"}, {"b"}).elements.at(1).str, "b");
  EXPECT_EQ(calls(*client, "evalsha"), 3);
  EXPECT_EQ(calls(*client, "eval"), 0) << "the source was sent again";
  EXPECT_EQ(calls(*client, "script|load"), 0) << "the digest was asked for again";
  // A copy keeps what was learned.
  const Script copy(script);
  EXPECT_EQ(copy.sha1(), script.sha1());
}

TEST(Client, EvalRunsAScriptTheServerForgot) {
  auto client = redis_test::shared_client();
  const Script script("return ARGV[1]");
  EXPECT_EQ(client->eval(script, {}, {"x"}).str, "x");
  ASSERT_FALSE(script.sha1().empty());
  client->command({"SCRIPT", "FLUSH"});  // as after a restart: NOSCRIPT for the known digest
  EXPECT_EQ(client->eval(script, {}, {"y"}).str, "y");
  EXPECT_EQ(client->command({"SCRIPT", "EXISTS", std::string(script.sha1())}).elements.at(0).integer, 1)
      << "EVAL did not load it again";
  EXPECT_THROW(client->eval(Script("return redis.call('NOSUCHCOMMAND')"), {}, {}),
               stampede::redis::reply_error);
  EXPECT_THROW(client->eval(Script("this is no Lua"), {}, {}), stampede::redis::reply_error);
}

TEST(Client, EvalWorksForAUserWhoMayNotLoadScripts) {
  redis_test::RedisServer server;
  auto admin = Client::connect(server.url());
  admin->command({"ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-script"});
  auto client = Client::connect("redis://app:pw@127.0.0.1:" + std::to_string(server.port()));
  ASSERT_THROW(client->command({"SCRIPT", "LOAD", "return 1"}), stampede::redis::reply_error)
      << "the user may load scripts: the setup is wrong";
  const Script unknown("return 'by eval'");
  EXPECT_EQ(client->eval(unknown, {}, {}).str, "by eval");
  EXPECT_EQ(client->eval(unknown, {}, {}).str, "by eval");
  EXPECT_TRUE(unknown.sha1().empty());
  // A digest learned elsewhere (the admin may load) is used by EVALSHA, which the user may run.
  const Script known("return 'by evalsha'");
  EXPECT_EQ(admin->eval(known, {}, {}).str, "by evalsha");
  EXPECT_EQ(client->eval(known, {}, {}).str, "by evalsha");
}

TEST(Client, RequirepassRightWrongAndMissingPassword) {
  redis_test::RedisServer server({"--requirepass", "s3cret"});
  auto good = Client::connect(server.url("s3cret"));
  EXPECT_EQ(good->command({"PING"}).str, "PONG");
  auto acl = Client::connect("redis://default:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/1");
  EXPECT_EQ(acl->command({"SET", "x", "1"}).str, "OK");
  EXPECT_EQ(good->command({"EXISTS", "x"}).integer, 0) << "the /1 URL did not SELECT 1";

  try {
    Client::connect(server.url("wrong"));
    FAIL() << "a wrong password connected";
  } catch (const stampede::backend_error& e) {
    EXPECT_NE(std::string(e.what()).find("AUTH failed"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Client::connect(server.url()), stampede::backend_error);  // NOAUTH on first use
}

TEST(Client, ConnectsOverAUnixSocketAndSelectsTheDatabase) {
  const std::string path = "/tmp/stampede-redis-test-" + std::to_string(::getpid()) + ".sock";
  redis_test::RedisServer server({"--unixsocket", path, "--unixsocketperm", "700"});
  auto client = Client::connect("unix://" + path + "?db=2");
  EXPECT_EQ(client->command({"SET", "k", "v"}).str, "OK");
  auto tcp = Client::connect(server.url() + "/2");
  EXPECT_EQ(tcp->command({"GET", "k"}).str, "v");
  auto db0 = Client::connect(server.url());
  EXPECT_TRUE(db0->command({"GET", "k"}).is_nil());
}

// The test helper's own promise: when RedisServer's constructor returns, every endpoint a test
// may use answers, the unix socket included (no retry here, as in the tests that rely on it).
TEST(RedisServerHelper, EveryEndpointAnswersAsSoonAsTheServerIsConstructed) {
  for (int i = 0; i < 20; ++i) {
    const std::string path =
        "/tmp/stampede-ready-" + std::to_string(::getpid()) + "-" + std::to_string(i) + ".sock";
    redis_test::RedisServer server({"--unixsocket", path});
    try {
      EXPECT_EQ(Client::connect("unix://" + path)->command({"PING"}).str, "PONG");
      EXPECT_EQ(Client::connect(server.url())->command({"PING"}).str, "PONG");
    } catch (const stampede::backend_error& e) {
      ADD_FAILURE() << "start " << i << ": " << e.what();
    }
  }
}

TEST(Client, BorrowTimeoutWhenEveryConnectionIsBusy) {
  auto client = Client::connect(redis_test::shared_server().url(),
                                {.command_timeout = 0ms, .borrow_timeout = 0ms, .pool_size = 1});
  auto observer = redis_test::shared_client();
  const std::string list = redis_test::unique_prefix() + "list";
  auto blocked = std::async(std::launch::async, [&] { return client->command({"BLPOP", list, "0"}); });
  ASSERT_TRUE(stampede_test::eventually([&] {
    const std::string info = observer->command({"INFO", "clients"}).str;
    return info.find("blocked_clients:0") == std::string::npos;
  }));
  try {
    client->command({"PING"});
    FAIL() << "borrowed a connection that was in use";
  } catch (const stampede::backend_error& e) {
    EXPECT_NE(std::string(e.what()).find("borrow_timeout"), std::string::npos) << e.what();
  }
  observer->command({"LPUSH", list, "x"});
  EXPECT_EQ(blocked.get().elements.at(1).str, "x");
  EXPECT_EQ(client->command({"PING"}).str, "PONG");  // the connection went back to the pool
}

TEST(Client, CommandTimeoutDiscardsTheConnection) {
  auto client = Client::connect(redis_test::shared_server().url(), {.command_timeout = 50ms, .pool_size = 1});
  const std::string list = redis_test::unique_prefix() + "never";
  EXPECT_THROW(client->command({"BLPOP", list, "0"}), stampede::backend_error);
  EXPECT_EQ(client->open_connections(), 0u) << "a timed-out connection was kept";
  EXPECT_EQ(client->command({"PING"}).str, "PONG");
}

TEST(Client, ReconnectsByItselfAfterTheServerRestarts) {
  redis_test::RedisServer server;
  auto client = Client::connect(server.url(), {.pool_size = 4});
  EXPECT_EQ(client->command({"SET", "k", "1"}).str, "OK");
  server.kill();
  EXPECT_THROW(client->command({"GET", "k"}), stampede::backend_error);
  EXPECT_THROW(client->command({"GET", "k"}), stampede::backend_error);  // connect refused
  server.start();
  EXPECT_TRUE(client->command({"GET", "k"}).is_nil());  // a new, empty server
}

}  // namespace
