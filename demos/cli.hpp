// demos/cli.hpp: the command-line conventions of the demo programs (and tests/soak/soak_worker), on
// CLI11.
//
// Flags are strict: an unknown flag or argument, a missing or malformed value, a value out of range
// or not among the choices is a usage error; demo::run() prints it on stderr and returns exit code 2.
// --help (-h) prints the usage on stdout and returns 0, on the program and on each subcommand:
//
//   CLI::App app("One cold key, many workers, one DB hit.", "cache_rebuild_blocking");
//   demo::conventions(app);
//   app.add_option("--workers", workers, "callers released at once")
//       ->check(demo::integer)->check(CLI::Range(1, 10'000));
//   app.add_option("--on-timeout", policy, "...")->check(CLI::IsMember({"compute", "error", "stale"}));
//   return demo::run(app, argc, argv, [&] { return run_demo(); });
//
// CLI11's own conversions accept more than the demos do (octal and hex integers, "nan", leading
// spaces, empty strings), so numbers and names are checked first by demo::integer, demo::number and
// demo::non_empty, then against their range or choices.
//
// Thread-compatible: parse once in main(), then read the variables from any thread.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <iostream>
#include <stampede/errors.hpp>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace demo {

/// A bad command line found after parsing (e.g. --redis in a build without Redis): exit code 2.
class usage_error : public std::runtime_error {
 public:
  explicit usage_error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline std::string check_integer(std::string& v) {
  std::int64_t parsed = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size()) return "'" + v + "' is not an integer";
  return {};
}
inline std::string check_number(std::string& v) {
  double parsed = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || !std::isfinite(parsed)) {
    return "'" + v + "' is not a number";
  }
  return {};
}
inline std::string check_non_empty(std::string& v) { return v.empty() ? "value must not be empty" : ""; }
}  // namespace detail

/// A decimal integer ("12", "-3"); no octal, hex, spaces or suffixes. Chain CLI::Range after it.
inline const CLI::Validator integer(detail::check_integer, "", "INTEGER");
/// A finite decimal number ("0.25", "3", "1e3"); no nan, inf or spaces. Chain CLI::Range after it.
inline const CLI::Validator number(detail::check_number, "", "NUMBER");
/// Any non-empty string.
inline const CLI::Validator non_empty(detail::check_non_empty, "", "NON_EMPTY");

/// Sets the demos' conventions on `app` (or a subcommand): a flag given twice keeps the last value,
/// switches take no `=value`, --help shows each default.
inline void conventions(CLI::App& app) {
  app.option_defaults()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->disable_flag_override()
      ->always_capture_default();
}

/// @return a subcommand of `parent` with the demos' conventions that also accepts the parent's
/// flags after its name (`lock_demo watchdog --resource demo`).
inline CLI::App* subcommand(CLI::App& parent, const std::string& name, const std::string& summary) {
  CLI::App* sub = parent.add_subcommand(name, summary);
  conventions(*sub);
  sub->fallthrough();
  return sub;
}

/// Parses the command line and runs `body`, turning failures into a message on stderr and an exit
/// code: 0 = ok (or --help), 2 = bad command line or setting, 1 = the demo failed (e.g. a backend
/// error). CLI11's own exit codes (105 for a validation error, ...) are all mapped to 2.
/// @return the exit code for main().
template <class Body>
int run(CLI::App& app, int argc, char** argv, Body&& body) {
  const std::string& prog = app.get_name();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, std::cout, std::cerr);  // --help: the usage on stdout
    }
    std::cerr << prog << ": " << e.what() << "\n(run '" << prog << " --help' for the flags)\n";
    return 2;
  }
  try {
    return std::forward<Body>(body)();
  } catch (const usage_error& e) {
    std::cerr << prog << ": " << e.what() << "\n(run '" << prog << " --help' for the flags)\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << prog << ": invalid setting: " << e.what() << '\n';
    return 2;
  } catch (const stampede::error& e) {
    std::cerr << prog << ": error: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << prog << ": unexpected error: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace demo
