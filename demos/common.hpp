// demos/common.hpp: strict command-line flags shared by the demo programs.
//
// Every flag is declared with where its value goes and what it accepts; an unknown flag, a missing
// value or a value out of range is a usage error (exit code 2), and --help prints the usage:
//
//   demo::Flags flags("cache_rebuild_blocking", "One cold key, many workers, one DB hit.");
//   flags.integer("--workers", &workers, 1, 100000, "callers released at once on the key");
//   return demo::run(flags, argc, argv, [&] { return run_demo(); });
//
// Thread-compatible: parse once in main(), then read the variables from any thread.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <sstream>
#include <stampede/errors.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace demo {

/// A bad command line: unknown flag, missing or malformed value, value out of range.
class usage_error : public std::runtime_error {
 public:
  explicit usage_error(const std::string& what) : std::runtime_error(what) {}
};

/// Declared flags of one program, and their parser.
class Flags {
 public:
  Flags(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  /// An integer flag in [min, max]; `*out` holds the default.
  void integer(std::string name, std::int64_t* out, std::int64_t min, std::int64_t max, std::string help) {
    add(std::move(name), "N", std::move(help), std::to_string(*out),
        [=](std::string_view flag, std::string_view v) {
          std::int64_t parsed = 0;
          auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
          if (ec != std::errc{} || end != v.data() + v.size()) {
            throw usage_error(std::string(flag) + ": '" + std::string(v) + "' is not an integer");
          }
          if (parsed < min || parsed > max) {
            throw usage_error(std::string(flag) + ": " + std::string(v) + " is out of range [" +
                              std::to_string(min) + ", " + std::to_string(max) + "]");
          }
          *out = parsed;
        });
  }

  /// A finite decimal number in [min, max] (fractions allowed); `*out` holds the default.
  void number(std::string name, double* out, double min, double max, std::string help) {
    add(std::move(name), "X", std::move(help), format_number(*out),
        [=](std::string_view flag, std::string_view v) {
          double parsed = 0;
          auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
          if (ec != std::errc{} || end != v.data() + v.size() || !std::isfinite(parsed)) {
            throw usage_error(std::string(flag) + ": '" + std::string(v) + "' is not a number");
          }
          if (parsed < min || parsed > max) {
            throw usage_error(std::string(flag) + ": " + std::string(v) + " is out of range [" +
                              format_number(min) + ", " + format_number(max) + "]");
          }
          *out = parsed;
        });
  }

  /// A string flag; with `choices`, the value must be one of them. `*out` holds the default.
  /// `metavar` names the value in --help (default: the choices, or STR).
  void text(std::string name, std::string* out, std::string help, std::vector<std::string> choices = {},
            bool allow_empty = false, std::string metavar = {}) {
    if (metavar.empty()) metavar = choices.empty() ? "STR" : join(choices, "|");
    add(std::move(name), std::move(metavar), std::move(help), *out,
        [out, allow_empty, choices = std::move(choices)](std::string_view flag, std::string_view v) {
          if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
            throw usage_error(std::string(flag) + ": '" + std::string(v) + "' is not one of " +
                              join(choices, ", "));
          }
          if (v.empty() && !allow_empty) throw usage_error(std::string(flag) + ": value must not be empty");
          *out = std::string(v);
        });
  }

  /// A switch that takes no value: present = true.
  void toggle(std::string name, bool* out, std::string help) {
    Flag f{std::move(name), "", std::move(help), "", nullptr, nullptr};
    f.on_switch = [out] { *out = true; };
    flags_.push_back(std::move(f));
  }

  /// The one positional argument (e.g. a mode), required, one of `choices`.
  void positional(std::string name, std::string* out, std::vector<std::string> choices, std::string help) {
    positional_name_ = std::move(name);
    positional_help_ = std::move(help);
    positional_choices_ = std::move(choices);
    positional_out_ = out;
  }

  /// Parses argv[1..argc).
  /// @return false if --help was given (the usage has been printed to stdout).
  /// @throws usage_error for anything it cannot accept.
  bool parse(int argc, char** argv) {
    bool positional_seen = false;
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::cout << usage();
        return false;
      }
      if (arg.size() < 2 || arg.substr(0, 2) != "--") {
        if (positional_out_ == nullptr) throw usage_error("unexpected argument '" + std::string(arg) + "'");
        if (positional_seen) throw usage_error("more than one " + positional_name_ + " given");
        if (std::find(positional_choices_.begin(), positional_choices_.end(), arg) ==
            positional_choices_.end()) {
          throw usage_error(positional_name_ + ": '" + std::string(arg) + "' is not one of " +
                            join(positional_choices_, ", "));
        }
        *positional_out_ = std::string(arg);
        positional_seen = true;
        continue;
      }
      std::string_view name = arg;
      std::string_view value;
      bool inline_value = false;
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
      Flag* flag = find(name);
      if (flag == nullptr) throw usage_error("unknown flag '" + std::string(name) + "'");
      if (flag->on_switch) {
        if (inline_value) throw usage_error(std::string(name) + " takes no value");
        flag->on_switch();
        continue;
      }
      if (!inline_value) {
        if (i + 1 >= argc) throw usage_error(std::string(name) + " needs a value");
        value = argv[++i];
      }
      flag->on_value(name, value);
    }
    if (positional_out_ != nullptr && !positional_seen) {
      throw usage_error("missing " + positional_name_ + " (one of " + join(positional_choices_, ", ") + ")");
    }
    return true;
  }

  /// @return the --help text.
  [[nodiscard]] std::string usage() const {
    std::ostringstream out;
    out << "usage: " << program_;
    if (positional_out_ != nullptr) out << ' ' << join(positional_choices_, "|");
    out << " [flags]\n\n" << summary_ << "\n\n";
    if (positional_out_ != nullptr) out << "  " << positional_name_ << ": " << positional_help_ << "\n\n";
    out << "flags:\n";
    for (const Flag& f : flags_) {
      std::string head = f.name + (f.metavar.empty() ? "" : " " + f.metavar);
      out << "  " << head;
      out << std::string(head.size() < 28 ? 28 - head.size() : 1, ' ') << f.help;
      if (!f.on_switch && !f.default_value.empty()) out << " (default: " << f.default_value << ")";
      out << '\n';
    }
    out << "  --help                      show this help and exit\n";
    return out.str();
  }

  [[nodiscard]] const std::string& program() const noexcept { return program_; }

  /// "0.25" rather than "0.250000".
  static std::string format_number(double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc{} ? std::string(buf, end) : std::to_string(v);
  }

 private:
  struct Flag {
    std::string name;
    std::string metavar;
    std::string help;
    std::string default_value;
    std::function<void(std::string_view, std::string_view)> on_value;
    std::function<void()> on_switch;
  };

  void add(std::string name, std::string metavar, std::string help, std::string default_value,
           std::function<void(std::string_view, std::string_view)> on_value) {
    flags_.push_back(Flag{std::move(name), std::move(metavar), std::move(help), std::move(default_value),
                          std::move(on_value), nullptr});
  }
  Flag* find(std::string_view name) {
    for (Flag& f : flags_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }
  static std::string join(const std::vector<std::string>& parts, std::string_view sep) {
    std::string out;
    for (const std::string& p : parts) {
      if (!out.empty()) out += sep;
      out += p;
    }
    return out;
  }

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
  std::string positional_name_;
  std::string positional_help_;
  std::vector<std::string> positional_choices_;
  std::string* positional_out_ = nullptr;
};

/// Parses the flags and runs `body`, turning failures into a message on stderr and an exit code:
/// 0 = ok (or --help), 2 = bad command line or option, 1 = the demo failed (e.g. backend error).
template <class Body>
int run(Flags& flags, int argc, char** argv, Body&& body) {
  const std::string& prog = flags.program();
  try {
    if (!flags.parse(argc, argv)) return 0;
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

/// Milliseconds as a double, for latencies.
inline double to_ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

/// Seconds given as a decimal number (e.g. "0.5") -> milliseconds, at least 1 when positive.
inline std::chrono::milliseconds seconds_to_ms(double seconds) {
  auto ms = static_cast<std::int64_t>(std::llround(seconds * 1000.0));
  return std::chrono::milliseconds(seconds > 0 && ms == 0 ? 1 : ms);
}

/// The q-quantile (0..1) of `values` by nearest rank; 0 for none.
inline double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

/// Rounds to 0.01 so that printed latencies stay readable.
inline double round2(double v) { return std::round(v * 100.0) / 100.0; }

}  // namespace demo
