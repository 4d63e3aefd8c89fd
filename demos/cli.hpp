// demos/cli.hpp: the command-line conventions of the demo programs (and tests/soak/soak_worker), on
// CLI11.
//
// Flags are strict: an unknown flag or argument, a missing or malformed value, a value out of range
// or not among the choices is a usage error; demo::run() prints it on stderr and returns exit code 2.
// --help (-h) prints the usage on stdout and returns 0, on the program and on each subcommand:
//
//   auto app = demo::make_app("One cold key, many workers, one DB hit.", "cache_rebuild_blocking");
//   app->add_option("--workers", workers, "callers released at once")
//       ->check(demo::integer)->check(CLI::Range(1, 10'000));
//   app->add_option("--on-timeout", policy, "...")->check(CLI::IsMember({"compute", "error", "stale"}));
//   return demo::run(*app, argc, argv, [&] { return run_demo(); });
//
// CLI11's own conversions accept more than the demos do (octal and hex integers, "nan", leading
// spaces, empty strings), so numbers and names are checked first by demo::integer, demo::number and
// demo::non_empty, then against their range or choices.
//
// The App itself is made, parsed and printed in cli.cpp (the library stampede_demo_cli), compiled
// once for every demo: CLI11 is header-only, and its parser and help formatter were most of each
// demo's compile time.
//
// Thread-compatible: parse once in main(), then read the variables from any thread.
#pragma once

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <stampede/errors.hpp>
#include <stdexcept>
#include <string>
#include <utility>

namespace demo {

/// A bad command line found after parsing (e.g. --redis in a build without Redis): exit code 2.
class usage_error : public std::runtime_error {
 public:
  explicit usage_error(const std::string& what) : std::runtime_error(what) {}
};

/// A decimal integer ("12", "-3"); no octal, hex, spaces or suffixes. Chain CLI::Range after it.
extern const CLI::Validator integer;
/// A finite decimal number ("0.25", "3", "1e3"); no nan, inf or spaces. Chain CLI::Range after it.
extern const CLI::Validator number;
/// Any non-empty string.
extern const CLI::Validator non_empty;

/// @return an App named `name` with the demos' conventions (see conventions()).
std::unique_ptr<CLI::App> make_app(const std::string& description, const std::string& name);

/// Sets the demos' conventions on `app` (or a subcommand): a flag given twice keeps the last value,
/// switches take no `=value`, --help shows each default.
void conventions(CLI::App& app);

/// @return a subcommand of `parent` with the demos' conventions that also accepts the parent's
/// flags after its name (`lock_demo watchdog --resource demo`).
CLI::App* subcommand(CLI::App& parent, const std::string& name, const std::string& summary);

/// Parses the command line into `app`'s variables.
/// @return std::nullopt when the program should go on, else its exit code: 0 after --help (the
///         usage is on stdout), 2 after a usage error (the message is on stderr).
std::optional<int> parse(CLI::App& app, int argc, char** argv);

/// Parses the command line and runs `body`, turning failures into a message on stderr and an exit
/// code: 0 = ok (or --help), 2 = bad command line or setting, 1 = the demo failed (e.g. a backend
/// error). CLI11's own exit codes (105 for a validation error, ...) are all mapped to 2.
/// @return the exit code for main().
template <class Body>
int run(CLI::App& app, int argc, char** argv, Body&& body) {
  if (std::optional<int> exit_code = parse(app, argc, argv)) return *exit_code;
  const std::string& prog = app.get_name();
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
