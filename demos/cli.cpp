// demos/cli.cpp: the demos' command line on CLI11 (cli.hpp), compiled once for all of them.
#include "cli.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>

namespace demo {

namespace {

std::string check_integer(std::string& v) {
  std::int64_t parsed = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size()) return "'" + v + "' is not an integer";
  return {};
}

std::string check_number(std::string& v) {
  double parsed = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || !std::isfinite(parsed)) {
    return "'" + v + "' is not a number";
  }
  return {};
}

std::string check_non_empty(std::string& v) { return v.empty() ? "value must not be empty" : ""; }

}  // namespace

const CLI::Validator integer(check_integer, "", "INTEGER");
const CLI::Validator number(check_number, "", "NUMBER");
const CLI::Validator non_empty(check_non_empty, "", "NON_EMPTY");

std::unique_ptr<CLI::App> make_app(const std::string& description, const std::string& name) {
  auto app = std::make_unique<CLI::App>(description, name);
  conventions(*app);
  return app;
}

void conventions(CLI::App& app) {
  app.option_defaults()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->disable_flag_override()
      ->always_capture_default();
}

CLI::App* subcommand(CLI::App& parent, const std::string& name, const std::string& summary) {
  CLI::App* sub = parent.add_subcommand(name, summary);
  conventions(*sub);
  sub->fallthrough();
  return sub;
}

std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, std::cout, std::cerr);  // --help: the usage on stdout
    }
    const std::string& prog = app.get_name();
    std::cerr << prog << ": " << e.what() << "\n(run '" << prog << " --help' for the flags)\n";
    return 2;
  }
}

}  // namespace demo
