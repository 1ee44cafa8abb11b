// A small tmpfs mounted for a test, to fill a disk on purpose.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace comet_test {

// A tmpfs of `size` mounted at `path` (created) for the scope, for disk-full tests: needs root
// and a system that lets it mount; mounted() says whether it is there, why_not() why not.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& path, const std::string& size) : path_(path) {
    if (geteuid() != 0) {
      why_not_ = "mounting a small tmpfs needs root";
    } else if (::mkdir(path.c_str(), 0755) != 0 ||
               ::mount("comet-test", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      why_not_ = "cannot mount a tmpfs at " + path + ": " + std::strerror(errno);
    } else {
      mounted_ = true;
    }
  }
  ~SmallTmpfs() {
    if (mounted_) {
      EXPECT_EQ(::umount2(path_.c_str(), MNT_DETACH), 0);
    }
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& path() const { return path_; }
  const std::string& why_not() const { return why_not_; }

 private:
  std::string path_, why_not_;
  bool mounted_ = false;
};

}  // namespace comet_test
