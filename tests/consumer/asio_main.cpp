// tests/consumer/asio_main.cpp: the installed component asio (stampede::asio): 100 coroutines on
// one io_context thread co_await one cold key; the loader must run once and each must get its
// value. Exit 0 = pass.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <cstdio>
#include <stampede/asio.hpp>
#include <stampede/stampede.hpp>

int main() {
  stampede::Cache<int> cache;
  asio::io_context io;
  std::atomic<int> loads{0};
  int served = 0;
  for (int i = 0; i < 100; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          const int v = co_await stampede::asio::async_get_or_compute(
              cache, "k", [&] { return ++loads, 7; }, asio::use_awaitable);
          if (v == 7) ++served;
        },
        asio::detached);
  }
  io.run();
  if (loads.load() != 1 || served != 100) {
    std::fprintf(stderr, "consumer_asio: %d loads, %d of 100 served\n", loads.load(), served);
    return 1;
  }
  std::puts("consumer_asio: 100 coroutines, 1 load");
  return 0;
}
