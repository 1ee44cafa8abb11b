// `comet append DIR STREAM [-c key=value ...]`: one entry per stdin line, appended in batches.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "commands.h"

namespace comet::cli {
namespace {

constexpr size_t kBatchLines = 1000;
constexpr OptionSpec kOptions[] = {{"-c", true}};

// Reads a file descriptor in chunks and hands out the complete lines of each chunk, so that
// a bulk input is appended in large batches and a slow producer's lines are appended as soon
// as they arrive. The trailing '\n' is stripped, an unterminated last line is still a line,
// and bytes (NUL included) are kept as they are. A line longer than `max_line` bytes is refused
// as soon as that many bytes of it arrived: the buffer never holds more than one chunk beyond
// that, and every byte is searched for '\n' once.
class LineChunker {
 public:
  LineChunker(int fd, uint64_t max_line) : fd_(fd), max_line_(max_line) {}

  // Reads once more (blocking) and fills *lines with views of the lines completed by it; the
  // views stay valid until the next call, which must be given the same vector. Returns false at the end of input (after the last
  // line was handed out), or with *error set if read(2) failed or a line is too long (the
  // lines before that one are handed out first).
  bool Next(std::vector<std::string_view>* lines, Status* error) {
    lines_ += lines->size();
    lines->clear();
    if (!error_.ok()) {
      *error = error_;
      return false;
    }
    buf_.erase(0, consumed_);
    searched_ -= consumed_;
    consumed_ = 0;
    if (eof_) return false;
    size_t old = buf_.size();
    buf_.resize(old + kChunk);
    ssize_t n;
    do {
      n = ::read(fd_, buf_.data() + old, kChunk);
    } while (n < 0 && errno == EINTR);
    buf_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n < 0) {
      *error = Status::FromErrno(errno, "reading stdin");
      return false;
    }
    eof_ = n == 0;
    Split(lines);
    return !lines->empty() || (!eof_ && error_.ok()) || Next(lines, error);
  }

 private:
  static constexpr size_t kChunk = 1 << 20;

  void Split(std::vector<std::string_view>* lines) {
    std::string_view data(buf_);
    size_t start = 0;
    for (size_t nl; (nl = data.find('\n', searched_)) != std::string_view::npos;) {
      if (!Take(data.substr(start, nl - start), lines)) return;
      start = searched_ = nl + 1;
      consumed_ = start;
    }
    searched_ = data.size();
    if (eof_ && start < data.size()) {
      if (!Take(data.substr(start), lines)) return;
      consumed_ = data.size();
    } else if (data.size() - start > max_line_) {
      // The unfinished line alone is already too long: refuse it now rather than buffer more.
      Take(data.substr(start), lines);
    }
  }

  // Hands out one line, or records that it is too long.
  bool Take(std::string_view line, std::vector<std::string_view>* lines) {
    if (line.size() > max_line_) {
      error_ = Status::TooLarge("stdin line " + std::to_string(lines_ + lines->size() + 1) +
                                " is longer than storage.max_entry_bytes (" +
                                std::to_string(max_line_) + " bytes)");
      return false;
    }
    lines->push_back(line);
    return true;
  }

  int fd_;
  uint64_t max_line_;
  std::string buf_;
  size_t consumed_ = 0;   // bytes of buf_ already handed out as lines
  size_t searched_ = 0;   // bytes of buf_ already searched for '\n'
  uint64_t lines_ = 0;    // lines handed out before the last call (for line numbers)
  Status error_;          // a line too long: reported once the lines before it are out
  bool eof_ = false;
};

// What has been appended so far, for the summary and for error messages.
struct Progress {
  uint64_t count = 0;
  uint64_t first = 0;
  uint64_t last = 0;

  void Add(const std::vector<EntryId>& ids, size_t n) {
    if (n == 0) return;
    if (count == 0) first = ids[0].entry;
    last = ids[n - 1].entry;
    count += n;
  }
  std::string Describe(std::string_view stream) const {
    std::string s = "appended " + std::to_string(count) + " entries to " + std::string(stream);
    if (count > 0) s += ": entries " + std::to_string(first) + ".." + std::to_string(last);
    return s;
  }
};

// Appends lines in batches of at most kBatchLines.
Status AppendLines(Client* client, Stream* stream, std::span<const std::string_view> lines,
                   std::vector<EntryId>* ids, Progress* progress) {
  while (!lines.empty()) {
    std::span<const std::string_view> batch = lines.first(std::min(lines.size(), kBatchLines));
    ids->resize(batch.size());
    if (Status s = client->Append(stream, batch, ids->data()); !s.ok()) {
      // Every earlier line was appended, so the batch starts at line count + 1.
      return Status(s.code(), "stdin lines " + std::to_string(progress->count + 1) + ".." +
                                  std::to_string(progress->count + batch.size()) + ": " +
                                  s.message());
    }
    progress->Add(*ids, batch.size());
    lines = lines.subspan(batch.size());
  }
  return Status::Ok();
}

// Reads stdin to the end, appending the lines of every chunk read.
Status AppendStdin(Client* client, Stream* stream, Progress* progress) {
  LineChunker chunker(STDIN_FILENO, client->config().storage.max_entry_bytes);
  std::vector<std::string_view> lines;
  std::vector<EntryId> ids;
  Status error;
  while (chunker.Next(&lines, &error)) {
    if (Status s = AppendLines(client, stream, lines, &ids, progress); !s.ok()) return s;
  }
  return error;
}

}  // namespace

int RunAppend(std::span<char* const> argv) {
  auto args = ParseArgs(argv, kOptions);
  if (!args.ok()) return UsageError("append", args.status().message());
  if (args->positional.size() != 2) return UsageError("append", "expected DIR STREAM");
  const std::string& dir = args->positional[0];
  const std::string& name = args->positional[1];
  if (Status s = CheckStreamName(name); !s.ok()) return UsageError("append", s.message());

  Config cfg = Config::Default();
  if (Status s = ApplySettings(&cfg, args->GetAll("-c")); !s.ok()) {
    return UsageError("append", s.message());
  }
  auto client = Client::Open(dir, cfg);
  if (!client.ok()) return Fail(Annotate(client.status(), dir, "opening " + dir));
  auto stream = (*client)->GetStream(name);
  if (!stream.ok()) return Fail(Annotate(stream.status(), name, name + " in " + dir));

  Progress progress;
  Status s = AppendStdin(client->get(), *stream, &progress);
  Status closed = (*client)->Close();
  if (!s.ok()) {
    PrintError(Annotate(s, name, "appending to " + name + " in " + dir));
    if (progress.count > 0) {
      std::fprintf(stderr, "comet: (%s before the error)\n", progress.Describe(name).c_str());
    }
    return kExitFail;
  }
  if (!closed.ok()) return Fail(Annotate(closed, dir, "closing " + dir));
  std::printf("%s\n", progress.Describe(name).c_str());
  return std::fflush(stdout) == 0 ? kExitOk : kExitFail;
}

}  // namespace comet::cli
