// Shared helpers of the `comet` tool (see cli.h).
#include "cli.h"

#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "comet/stream.h"

namespace comet::cli {

// ---- errors ----------------------------------------------------------------------------------

void PrintError(std::string_view message) {
  std::fprintf(stderr, "comet: %.*s\n", static_cast<int>(message.size()), message.data());
}

void PrintError(const Status& s) {
  PrintError(s.message().empty() ? std::string_view(code_name(s.code())) : s.message());
}

Status Annotate(const Status& s, std::string_view subject, std::string_view context) {
  if (s.ok() || s.message().find(subject) != std::string::npos) return s;
  std::string m(context);
  m += ": ";
  m += s.message().empty() ? std::string(code_name(s.code())) : s.message();
  return Status(s.code(), std::move(m));
}

int Fail(const Status& s) {
  PrintError(s);
  return kExitFail;
}

int UsageError(std::string_view command, std::string_view message) {
  PrintError(std::string(command) + ": " + std::string(message));
  std::fprintf(stderr, "run 'comet help %.*s' for usage\n", static_cast<int>(command.size()),
               command.data());
  return kExitUsage;
}

// ---- option parsing --------------------------------------------------------------------------

bool Args::Has(std::string_view name) const {
  for (const auto& [k, v] : options) {
    if (k == name) return true;
  }
  return false;
}

std::optional<std::string> Args::Get(std::string_view name) const {
  std::optional<std::string> value;
  for (const auto& [k, v] : options) {
    if (k == name) value = v;
  }
  return value;
}

std::vector<std::string> Args::GetAll(std::string_view name) const {
  std::vector<std::string> values;
  for (const auto& [k, v] : options) {
    if (k == name) values.push_back(v);
  }
  return values;
}

namespace {

const OptionSpec* FindSpec(std::span<const OptionSpec> specs, std::string_view name) {
  for (const auto& spec : specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool LooksLikeOption(std::string_view arg) { return arg.size() > 1 && arg[0] == '-'; }

}  // namespace

Result<Args> ParseArgs(std::span<char* const> args, std::span<const OptionSpec> specs) {
  Args out;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (options_done || !LooksLikeOption(arg)) {
      out.positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const OptionSpec* spec = FindSpec(specs, name);
    if (spec == nullptr) return Status::Invalid("unknown option '" + std::string(name) + "'");
    if (!spec->takes_value) {
      if (inline_value) {
        return Status::Invalid("option '" + std::string(name) + "' takes no value");
      }
      out.options.emplace_back(std::string(name), std::string());
      continue;
    }
    if (inline_value) {
      out.options.emplace_back(std::string(name), std::string(*inline_value));
    } else if (i + 1 < args.size()) {
      out.options.emplace_back(std::string(name), std::string(args[++i]));
    } else {
      return Status::Invalid("option '" + std::string(name) + "' needs a value");
    }
  }
  return out;
}

Result<uint64_t> ParseCount(std::string_view option, std::string_view text) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Status::Invalid(std::string(option) + ": '" + std::string(text) +
                           "' is not a non-negative integer");
  }
  return v;
}

// ---- opening a data directory ----------------------------------------------------------------

Status ApplySettings(Config* cfg, const std::vector<std::string>& settings) {
  for (const std::string& setting : settings) {
    size_t eq = setting.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::Invalid("-c '" + setting + "': expected key=value");
    }
    Status s = cfg->Set(std::string_view(setting).substr(0, eq),
                        std::string_view(setting).substr(eq + 1));
    if (!s.ok()) return Status(s.code(), "-c '" + setting + "': " + s.message());
  }
  return Status::Ok();
}

Result<std::unique_ptr<Client>> OpenReadOnly(const std::string& dir) {
  std::error_code ec;
  std::filesystem::file_status st = std::filesystem::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::FromErrno(ec.value(), "checking data directory " + dir);
  }
  if (!std::filesystem::exists(st)) return Status::NotFound(dir + ": no such data directory");
  if (!std::filesystem::is_directory(st)) {
    return Status::Invalid(dir + " is not a directory (expected a Comet data directory)");
  }
  // Something a writer leaves in every data directory it opened: else this is not one.
  bool comet_dir = false;
  for (const char* name : {"comet.lock", "comet.ctl", "streams"}) {
    comet_dir = comet_dir || std::filesystem::exists(std::filesystem::path(dir) / name, ec);
  }
  if (!comet_dir) {
    return Status::NotFound(dir + " is not a Comet data directory (it has no comet.lock, "
                            "comet.ctl or streams/)");
  }
  Config cfg = Config::Default();
  cfg.open.read_only = true;
  auto client = Client::Open(dir, cfg);
  if (!client.ok()) return Annotate(client.status(), dir, "opening " + dir + " read-only");
  return std::move(client).value();
}

Status CheckStreamName(std::string_view name) {
  auto parsed = ParseStreamName(name);
  if (parsed.ok()) return Status::Ok();
  return Annotate(parsed.status(), name, "invalid stream name '" + std::string(name) + "'");
}

// ---- output ----------------------------------------------------------------------------------

bool Output::Flush() {
  if (!buf_.empty() && !failed_) {
    if (std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size()) failed_ = true;
  }
  buf_.clear();
  if (!failed_ && std::fflush(f_) != 0) failed_ = true;
  return !failed_;
}

void AppendEntryLine(std::string* out, std::string_view stream, const EntryId& id,
                     int64_t timestamp_ns, std::string_view data, bool json) {
  if (!json) {
    out->append(data);
    out->push_back('\n');
    return;
  }
  out->append("{\"stream\":");
  AppendJsonString(out, stream);
  out->append(",\"shard\":" + std::to_string(id.shard));
  out->append(",\"entry\":" + std::to_string(id.entry));
  out->append(",\"ts\":" + std::to_string(timestamp_ns));
  out->append(",\"data\":");
  AppendJsonString(out, data);
  out->append("}\n");
}

std::string Grouped(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string Plural(uint64_t n, std::string_view word, std::string_view plural) {
  std::string s = Grouped(n) + " ";
  if (n == 1) return s + std::string(word);
  return plural.empty() ? s + std::string(word) + "s" : s + std::string(plural);
}

std::string HumanBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  size_t unit = 0;
  while (bytes >= 1000.0 && unit + 1 < std::size(kUnits)) {
    bytes /= 1000.0;
    ++unit;
  }
  return unit == 0 ? Format("%.0f B", bytes) : Format("%.1f %s", bytes, kUnits[unit]);
}

std::string HumanDuration(double ns) {
  if (ns < 1e3) return Format("%.0f ns", ns);
  if (ns < 1e6) return Format("%.1f us", ns / 1e3);
  if (ns < 1e9) return Format("%.2f ms", ns / 1e6);
  return Format("%.2f s", ns / 1e9);
}

}  // namespace comet::cli
