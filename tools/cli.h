// Shared helpers of the `comet` command-line tool: option parsing, opening a data directory,
// error reporting, JSON string escaping and number formatting.
//
// Exit codes used by every subcommand: 0 success, 1 failure (I/O, corruption, library error),
// 2 usage error (bad arguments). `verify` uses 1 for "corruption found" and 2 for anything that
// kept it from checking.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comet/client.h"
#include "comet/config.h"
#include "comet/status.h"

#include "text.h"

namespace comet::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitUsage = 2;

// ---- errors ----------------------------------------------------------------------------------

// Prints "comet: <message>" on stderr.
void PrintError(std::string_view message);
// Prints "comet: <the status's message>" on stderr.
void PrintError(const Status& s);
// Library messages already say what failed and where; this adds "context: " in front only
// when the message does not mention `subject` (a path or a stream name) yet.
Status Annotate(const Status& s, std::string_view subject, std::string_view context);

// PrintError(s), then returns kExitFail.
int Fail(const Status& s);
// Prints "comet: <message>" and a hint to run `comet help CMD` on stderr; returns kExitUsage.
int UsageError(std::string_view command, std::string_view message);

// ---- option parsing --------------------------------------------------------------------------

// One option a subcommand accepts: "-n", "--from", "--json". Options with a value take it as
// the next argument or after '=' ("--from=5"). "--" ends the options.
struct OptionSpec {
  std::string_view name;
  bool takes_value = false;
};

class Args {
 public:
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // in command-line order

  bool Has(std::string_view name) const;
  // The last value given for `name`, if any.
  std::optional<std::string> Get(std::string_view name) const;
  // Every value given for a repeatable option ("-c k=v -c k2=v2").
  std::vector<std::string> GetAll(std::string_view name) const;
};

// Parses args (the arguments after the subcommand). Unknown options and missing values fail
// with a message naming the option.
Result<Args> ParseArgs(std::span<char* const> args, std::span<const OptionSpec> specs);

// Strict non-negative integer: digits only, no sign, no trailing text, no overflow.
Result<uint64_t> ParseCount(std::string_view option, std::string_view text);

// ---- opening a data directory ----------------------------------------------------------------

// Applies "key=value" settings (from -c) to cfg; the error names the setting.
Status ApplySettings(Config* cfg, const std::vector<std::string>& settings);

// Opens `dir` read-only. Fails with NOT_FOUND naming the path if it is not a directory, so
// that a typo never creates an empty data directory.
Result<std::unique_ptr<Client>> OpenReadOnly(const std::string& dir);

// Validates a stream name with a message that names it.
Status CheckStreamName(std::string_view name);

// ---- output ----------------------------------------------------------------------------------

// Appends s as a JSON string literal (with quotes). Control characters and DEL become \u00XX,
// and so does every byte that is not part of a valid UTF-8 sequence, so the output is always
// valid JSON (an invalid byte 0xNN decodes as U+00NN). Valid UTF-8 is copied as is.
using text::AppendJsonString;

// One entry as `tail` and `consume` print it: its data and a newline, or with `json` one object
// {"stream":..,"shard":..,"entry":..,"ts":..,"data":..} and a newline.
void AppendEntryLine(std::string* out, std::string_view stream, const EntryId& id,
                     int64_t timestamp_ns, std::string_view data, bool json);

// Buffered writer over stdout for large outputs; remembers write errors.
class Output {
 public:
  explicit Output(std::FILE* f = stdout) : f_(f) {}
  ~Output() { Flush(); }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  std::string& buffer() { return buf_; }
  void Write(std::string_view s) { buf_.append(s); MaybeFlush(); }
  // Flushes once the buffer holds 64 KiB or more.
  void MaybeFlush() {
    if (buf_.size() >= (64u << 10)) Flush();
  }
  // Writes out the buffer; false if the stream failed (e.g. a closed pipe or a full disk).
  bool Flush();

 private:
  std::FILE* f_;
  std::string buf_;
  bool failed_ = false;
};

// "1,234,567".
std::string Grouped(uint64_t v);
// "1 segment", "1,024 segments"; `plural` defaults to `word` + "s".
std::string Plural(uint64_t n, std::string_view word, std::string_view plural = {});
// "12.3 MB" / "512 B" (powers of 1000, as throughput figures are quoted).
std::string HumanBytes(double bytes);
// "812 ns", "12.4 us", "3.20 ms", "1.50 s".
std::string HumanDuration(double ns);
// printf into a std::string.
using text::Format;

}  // namespace comet::cli
