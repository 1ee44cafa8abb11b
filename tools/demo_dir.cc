// The demo's data directory guard (see demo_dir.h).
#include "demo_dir.h"

#include <filesystem>
#include <fstream>
#include <system_error>

namespace comet::cli {
namespace {

namespace fs = std::filesystem;

Status FsError(const std::error_code& ec, const std::string& what, const fs::path& path) {
  return Status::FromErrno(ec.value(), what + " " + path.string());
}

Status WriteMarker(const fs::path& dir) {
  fs::path marker = dir / kDemoMarker;
  std::ofstream out(marker, std::ios::trunc);
  out << "created by `comet demo`: the next `comet demo` run deletes everything in this "
         "directory\n";
  out.close();
  if (!out) return Status::Io("writing " + marker.string() + " failed");
  return Status::Ok();
}

// Deletes everything inside dir (not dir itself: it may be a mount point or a symlink).
Status WipeContents(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    fs::remove_all(it->path(), ec);
    if (ec) return FsError(ec, "removing", it->path());
  }
  if (ec) return FsError(ec, "listing", dir);
  return Status::Ok();
}

}  // namespace

Status PrepareDemoDir(const std::string& dir) {
  const fs::path path(dir);
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) return FsError(ec, "checking", path);
  if (!fs::exists(st)) {
    if (!fs::create_directories(path, ec) && ec) return FsError(ec, "creating", path);
    return WriteMarker(path);
  }
  if (!fs::is_directory(st)) return Status::Invalid(dir + " exists and is not a directory");
  bool empty = fs::is_empty(path, ec);
  if (ec) return FsError(ec, "listing", path);
  if (!empty) {
    if (!fs::is_regular_file(path / kDemoMarker, ec)) {
      return Status::Invalid("refusing to wipe " + dir + ": it is not empty and was not created "
                             "by `comet demo` (no " + kDemoMarker + " marker in it); give the "
                             "demo a new or empty directory");
    }
    if (Status s = WipeContents(path); !s.ok()) return s;
  }
  return WriteMarker(path);
}

}  // namespace comet::cli
