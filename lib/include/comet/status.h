// Status and Result: Comet's one error channel.
//
// A Status is a code (the C ABI's COMET_ERR_* numbers) and, on failure, a message that names
// what failed and where (path, stream, shard, entry, offset). OK carries no allocation.
// Thread safety: values; copy freely.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace comet {

enum class Code : int {
  kOk = 0,
  kInvalid = -1,    // bad argument, name or config value
  kIo = -2,         // the operating system refused (message has errno text and path)
  kCorrupt = -3,    // stored bytes failed their CRC or structure checks
  kNotOwner = -4,   // another writer holds the directory or shard
  kClosed = -5,     // the client was closed
  kFull = -6,       // disk or table full
  kTooLarge = -7,   // entry above storage.max_entry_bytes, or a caller buffer too small
  kNotFound = -8,   // no such entry (beyond the end, deleted, or in a gap)
  kTimeout = -9,
  kVersion = -10,   // a file written by another major format version
  kNoMem = -11,     // out of memory
};

const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string m) { return Status(Code::kInvalid, std::move(m)); }
  static Status Io(std::string m) { return Status(Code::kIo, std::move(m)); }
  static Status Corrupt(std::string m) { return Status(Code::kCorrupt, std::move(m)); }
  static Status NotOwner(std::string m) { return Status(Code::kNotOwner, std::move(m)); }
  static Status Closed(std::string m) { return Status(Code::kClosed, std::move(m)); }
  static Status Full(std::string m) { return Status(Code::kFull, std::move(m)); }
  static Status TooLarge(std::string m) { return Status(Code::kTooLarge, std::move(m)); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Timeout(std::string m) { return Status(Code::kTimeout, std::move(m)); }
  static Status Version(std::string m) { return Status(Code::kVersion, std::move(m)); }
  static Status NoMem(std::string m) { return Status(Code::kNoMem, std::move(m)); }
  // errno -> Status in one place: ENOSPC/EDQUOT become kFull, the rest kIo.
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int raw() const { return static_cast<int>(code_); }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorrupt() const { return code_ == Code::kCorrupt; }
  bool IsNotOwner() const { return code_ == Code::kNotOwner; }

  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or a failed Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}             // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {}        // NOLINT; REQUIRES: !s.ok()
  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace comet
