// The real functions behind every interposed symbol: one typed pointer each, resolved with
// dlsym(RTLD_NEXT) once, in the constructor (ResolveReal), never inside a hook. A hook that runs
// before the constructor (another library's constructor writing) resolves lazily through Real().
#pragma once

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

namespace comet_preload {

// X(name, return type, parameter list): every function the shim interposes and calls through.
#define COMET_PRELOAD_REAL_FUNCTIONS(X)                                                    \
  X(write, ssize_t, (int, const void*, size_t))                                            \
  X(writev, ssize_t, (int, const struct iovec*, int))                                      \
  X(pwrite, ssize_t, (int, const void*, size_t, off_t))                                    \
  X(pwrite64, ssize_t, (int, const void*, size_t, off_t))                                  \
  X(pwritev, ssize_t, (int, const struct iovec*, int, off_t))                              \
  X(pwritev64, ssize_t, (int, const struct iovec*, int, off_t))                            \
  X(pwritev2, ssize_t, (int, const struct iovec*, int, off_t, int))                        \
  X(send, ssize_t, (int, const void*, size_t, int))                                        \
  X(sendto, ssize_t, (int, const void*, size_t, int, const struct sockaddr*, socklen_t))   \
  X(sendmsg, ssize_t, (int, const struct msghdr*, int))                                    \
  X(connect, int, (int, const struct sockaddr*, socklen_t))                                \
  X(close, int, (int))                                                                     \
  X(close_range, int, (unsigned, unsigned, int))                                           \
  X(closefrom, void, (int))                                                                \
  X(dup2, int, (int, int))                                                                 \
  X(dup3, int, (int, int, int))                                                            \
  X(fclose, int, (FILE*))                                                                  \
  X(pclose, int, (FILE*))                                                                  \
  X(freopen, FILE*, (const char*, const char*, FILE*))                                     \
  X(freopen64, FILE*, (const char*, const char*, FILE*))                                   \
  X(execve, int, (const char*, char* const[], char* const[]))                              \
  X(execv, int, (const char*, char* const[]))                                              \
  X(execvp, int, (const char*, char* const[]))                                             \
  X(execvpe, int, (const char*, char* const[], char* const[]))                             \
  X(fexecve, int, (int, char* const[], char* const[]))                                     \
  X(_exit, void, (int))                                                                    \
  X(_Exit, void, (int))                                                                    \
  X(fwrite, size_t, (const void*, size_t, size_t, FILE*))                                  \
  X(fwrite_unlocked, size_t, (const void*, size_t, size_t, FILE*))                         \
  X(fputs, int, (const char*, FILE*))                                                      \
  X(fputs_unlocked, int, (const char*, FILE*))                                             \
  X(puts, int, (const char*))                                                              \
  X(fputc, int, (int, FILE*))                                                              \
  X(putc, int, (int, FILE*))                                                               \
  X(putchar, int, (int))                                                                   \
  X(fputc_unlocked, int, (int, FILE*))                                                     \
  X(putc_unlocked, int, (int, FILE*))                                                      \
  X(putchar_unlocked, int, (int))                                                          \
  X(__overflow, int, (FILE*, int))                                                         \
  X(vfprintf, int, (FILE*, const char*, va_list))                                          \
  X(vdprintf, int, (int, const char*, va_list))                                            \
  X(__vfprintf_chk, int, (FILE*, int, const char*, va_list))                               \
  X(__vdprintf_chk, int, (int, int, const char*, va_list))                                 \
  X(perror, void, (const char*))                                                           \
  X(verr, void, (int, const char*, va_list))                                               \
  X(verrx, void, (int, const char*, va_list))                                              \
  X(vwarn, void, (const char*, va_list))                                                   \
  X(vwarnx, void, (const char*, va_list))                                                  \
  X(__vsnprintf_chk, int, (char*, size_t, int, size_t, const char*, va_list))              \
  X(openlog, void, (const char*, int, int))                                                \
  X(closelog, void, (void))                                                                \
  X(setlogmask, int, (int))                                                                \
  X(vsyslog, void, (int, const char*, va_list))                                            \
  X(setuid, int, (uid_t))                                                                  \
  X(seteuid, int, (uid_t))                                                                 \
  X(setresuid, int, (uid_t, uid_t, uid_t))                                                 \
  X(setreuid, int, (uid_t, uid_t))

#define COMET_PRELOAD_DECLARE(name, ret, params) using name##_fn = ret(*) params;
COMET_PRELOAD_REAL_FUNCTIONS(COMET_PRELOAD_DECLARE)
#undef COMET_PRELOAD_DECLARE

struct RealFunctions {
#define COMET_PRELOAD_FIELD(name, ret, params) name##_fn name##_ = nullptr;
  COMET_PRELOAD_REAL_FUNCTIONS(COMET_PRELOAD_FIELD)
#undef COMET_PRELOAD_FIELD
};

// Resolved by ResolveReal(); read-only afterwards.
extern RealFunctions real;

// Resolves every pointer (called first thing in the constructor). A symbol this libc lacks
// (close_range, closefrom before glibc 2.34) stays null and its hook reports ENOSYS.
void ResolveReal();

// The lazy fallback for hooks that run before the constructor: resolves one symbol on first use.
void* ResolveOne(const char* name);

}  // namespace comet_preload

namespace comet_preload {
template <class F>
inline F RealOr(F* slot, const char* name) {
  F f = *slot;
  if (__builtin_expect(f != nullptr, 1)) return f;
  f = reinterpret_cast<F>(ResolveOne(name));
  *slot = f;
  return f;
}
}  // namespace comet_preload

// REAL(write)(fd, buf, n): the real function, resolved now if the constructor has not run yet.
#define REAL(name) ::comet_preload::RealOr(&::comet_preload::real.name##_, #name)
