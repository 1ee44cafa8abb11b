// Servers start as root and drop privileges in their workers (nginx, Apache and gunicorn call
// setgid, initgroups and setuid after fork). The data directory is opened by the shim as root,
// so before a root process switches to another user the shim hands the directory to that user
// (owner and group, recursively; nothing is made world-writable), and files root creates in it
// later take the directory's owner (env.cc). COMET_USER names the user up front instead.
#include <ftw.h>
#include <pwd.h>
#include <unistd.h>

#include <string>

#include "capture.h"
#include "lifecycle.h"
#include "real.h"

using namespace comet_preload;

namespace {

uid_t g_chown_uid;
gid_t g_chown_gid;

int ChownOne(const char* path, const struct stat* st, int, struct FTW*) {
  if (st->st_uid != g_chown_uid || st->st_gid != g_chown_gid) {
    (void)lchown(path, g_chown_uid, g_chown_gid);
  }
  return 0;
}

// Called before the real uid change, while still root.
void BeforeUidChange(uid_t uid) {
  if (uid == static_cast<uid_t>(-1) || geteuid() != 0 || uid == 0) return;
  Guard g;
  if (!g.entered() || !Active()) return;
  ErrnoKeeper keep;
  HandDirectoryTo(uid, getegid());
}

}  // namespace

namespace comet_preload {

void HandDirectoryTo(uid_t uid, gid_t gid) {
  g_chown_uid = uid;
  g_chown_gid = gid;
  (void)nftw(CurrentSettings().dir.c_str(), ChownOne, 16, FTW_PHYS);
}

bool HandDirectoryToUser(const std::string& user, std::string* error) {
  struct passwd* pw = getpwnam(user.c_str());
  if (!pw) {
    *error = "COMET_USER='" + user + "': no such user";
    return false;
  }
  if (geteuid() == 0) HandDirectoryTo(pw->pw_uid, pw->pw_gid);
  return true;
}

}  // namespace comet_preload

extern "C" {
#pragma GCC visibility push(default)  // the interposed symbols

int setuid(uid_t uid) {
  BeforeUidChange(uid);
  return REAL(setuid)(uid);
}

int seteuid(uid_t uid) {
  BeforeUidChange(uid);
  return REAL(seteuid)(uid);
}

int setreuid(uid_t ruid, uid_t euid) {
  BeforeUidChange(euid);
  return REAL(setreuid)(ruid, euid);
}

int setresuid(uid_t ruid, uid_t euid, uid_t suid) {
  BeforeUidChange(euid);
  return REAL(setresuid)(ruid, euid, suid);
}

#pragma GCC visibility pop
}  // extern "C"
