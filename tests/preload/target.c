/* A program that writes through every output path the LD_PRELOAD shim captures, for
 * tests/preload_test.cc. It knows nothing of the shim: it writes, and records on fd 3 (when
 * open) what it wrote, one "SINK HEX" line per line it expects to be captured (SINK is stdout,
 * stderr or syslog; HEX the line's bytes without its newline), so the test can compare the
 * capture with what the program meant to write.
 *
 * Usage: target MODE [ARG]
 *   stdio      every stdio, err/warn/error, fd-level and printf entry point, once each
 *   lines      partial lines, a 1 MiB line, binary bytes, and a last line without a newline
 *   threads    4 threads x 500 lines on stdout, "thread T line I"
 *   procs      fork children (exit and _exit), a posix_spawn'ed and an exec'd copy, a vfork
 *              child, and a signal handler that writes
 *   syslog     syslog/vsyslog with openlog/setlogmask/closelog; then datagrams to ARG (the
 *              syslog socket path) through send, sendto and sendmsg
 *   fds        dup/close/dup2 over fd 1 and 2, and a reused descriptor number
 *   socket     stdout is a socket: send, sendto, sendmsg
 *   seek       stdout is a regular file: pwrite, pwritev
 *   child TAG  two lines tagged TAG (the spawned and exec'd copies)
 *   exit CODE  one line, then err(CODE)
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <error.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#include <wchar.h>

extern char **environ;
static const char *self;

/* Records one expected line on fd 3. */
static void expect_bytes(const char *sink, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char *line = malloc(strlen(sink) + 2 * n + 3);
  size_t k = 0;
  for (const char *s = sink; *s; s++) line[k++] = *s;
  line[k++] = ' ';
  for (size_t i = 0; i < n; i++) {
    line[k++] = hex[(unsigned char)p[i] >> 4];
    line[k++] = hex[(unsigned char)p[i] & 15];
  }
  line[k++] = '\n';
  for (size_t done = 0; done < k;) {
    ssize_t w = write(3, line + done, k - done);
    if (w <= 0) break;
    done += (size_t)w;
  }
  free(line);
}

static void expect(const char *sink, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect(const char *sink, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  expect_bytes(sink, buf, (size_t)n);
}

static void my_vprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

static void my_vfprintf(FILE *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
}

static void my_vdprintf(int fd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdprintf(fd, fmt, ap);
  va_end(ap);
}

static void my_vwarn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarn(fmt, ap);
  va_end(ap);
}

static void my_vwarnx(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwarnx(fmt, ap);
  va_end(ap);
}

static void my_vsyslog(int pri, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsyslog(pri, fmt, ap);
  va_end(ap);
}

/* printf and the program's own vsnprintf must agree: the formats the shim formats itself
 * (%s, %.*s, %c, %%, %d %i %u %x with l, ll, z) at their edges, and ones it leaves to glibc. */
#define PRINTF_AND_EXPECT(fmt, ...)      \
  do {                                   \
    printf(fmt "\n", __VA_ARGS__);       \
    expect("stdout", fmt, __VA_ARGS__);  \
  } while (0)

static void run_formats(void) {
  const char *volatile null = NULL; /* volatile: the compiler does not see it is null */
  PRINTF_AND_EXPECT("d %d %d %d %i", 0, -1, INT32_MIN, INT32_MAX);
  PRINTF_AND_EXPECT("ld %ld %ld lld %lld", (long)INT64_MIN, (long)INT64_MAX, (long long)-42);
  PRINTF_AND_EXPECT("u %u %lu %llu %zu %zd", UINT32_MAX, (unsigned long)UINT64_MAX, 0ull,
                    (size_t)123456789, (ssize_t)-5);
  PRINTF_AND_EXPECT("x %x %lx %llx %zx", 0xdeadbeefu, (unsigned long)UINT64_MAX, 0ull, (size_t)255);
  PRINTF_AND_EXPECT("c %c%c%c %% s %s|%s", 'a', 'b', '\001', "str", "");
  PRINTF_AND_EXPECT("prec %.3s|%.0s|%.10s|%.*s|%.*s|%.*s|", "abcdef", "gone", "short", 2, "xyz",
                    -1, "negative is none", 0, "zero");
  PRINTF_AND_EXPECT("null %s|%.3s|%.6s|", null, null, null);
  PRINTF_AND_EXPECT("glibc's own %5d|%-4s|%05x|%+d|% d|%#x|%.3d|%hd|%hhu|%lc", 42, "ab", 0xab, 3, 4,
                    0x10, 7, (short)-2, (unsigned char)200, (wint_t)'w');
  PRINTF_AND_EXPECT("more %f %g %e %p %jd %td", 1.5, 0.25, 1e10, (void *)0x10, (intmax_t)-9,
                    (ptrdiff_t)3);
  PRINTF_AND_EXPECT("positional %2$s %1$s", "a", "b");
}

static void run_stdio(void) {
  const char *prog = program_invocation_short_name;
  int n = 7;
  printf("printf %d\n", n);                     expect("stdout", "printf 7");
  printf("printf constant\n");                  expect("stdout", "printf constant");
  fprintf(stdout, "fprintf stdout %d\n", n);    expect("stdout", "fprintf stdout 7");
  my_vprintf("vprintf %d\n", n);                expect("stdout", "vprintf 7");
  my_vfprintf(stdout, "vfprintf %s\n", "x");    expect("stdout", "vfprintf x");
  dprintf(1, "dprintf %d\n", n);                expect("stdout", "dprintf 7");
  my_vdprintf(1, "vdprintf %d\n", n);           expect("stdout", "vdprintf 7");
  puts("puts");                                 expect("stdout", "puts");
  fputs("fputs\n", stdout);                     expect("stdout", "fputs");
  fputs_unlocked("fputs_unlocked\n", stdout);   expect("stdout", "fputs_unlocked");
  fwrite("fwrite\n", 1, 7, stdout);             expect("stdout", "fwrite");
  fwrite_unlocked("fwrite_unlocked\n", 16, 1, stdout); expect("stdout", "fwrite_unlocked");
  fputc('A', stdout); putc('B', stdout); putchar('C');
  fputc_unlocked('D', stdout); putc_unlocked('E', stdout); putchar_unlocked('F');
  putchar('\n');                                expect("stdout", "ABCDEF");
  for (const char *p = "inline putchar_unlocked\n"; *p; p++) putchar_unlocked(*p);
  expect("stdout", "inline putchar_unlocked");
  write(1, "write\n", 6);                       expect("stdout", "write");
  struct iovec iov[3] = {{"wri", 3}, {"tev\nsecond ", 11}, {"writev line\n", 12}};
  writev(1, iov, 3);                            expect("stdout", "writev"); expect("stdout", "second writev line");
  fprintf(stderr, "fprintf stderr %d\n", n);    expect("stderr", "fprintf stderr 7");
  fputs("fputs stderr\n", stderr);              expect("stderr", "fputs stderr");
  write(2, "write stderr\n", 13);               expect("stderr", "write stderr");
  errno = ENOENT;
  perror("perror");                             expect("stderr", "perror: %s", strerror(ENOENT));
  errno = EACCES;
  warn("warn %d", n);                           expect("stderr", "%s: warn 7: %s", prog, strerror(EACCES));
  warnx("warnx %d", n);                         expect("stderr", "%s: warnx 7", prog);
  errno = EPERM;
  my_vwarn("vwarn");                            expect("stderr", "%s: vwarn: %s", prog, strerror(EPERM));
  my_vwarnx("vwarnx");                          expect("stderr", "%s: vwarnx", prog);
  error(0, EINVAL, "error %d", n);              expect("stderr", "%s: error 7: %s", program_invocation_name, strerror(EINVAL));
  error_at_line(0, 0, "file.c", 12, "at line"); expect("stderr", "%s:file.c:12: at line", program_invocation_name);
  /* errno survives a captured write, as it would an uncaptured one */
  errno = ERANGE;
  printf("errno kept\n");
  int kept = errno;                             expect("stdout", "errno kept");
  if (kept != ERANGE) printf("errno changed to %d\n", kept);
  /* return values as without the shim */
  int r1 = printf("ret %s\n", "abc");           expect("stdout", "ret abc");
  if (r1 != 8) printf("printf returned %d\n", r1);
  if (fputs("x\n", stdout) < 0 || fputc('y', stdout) != 'y' || fwrite("z\n", 2, 1, stdout) != 1 ||
      write(1, "w\n", 2) != 2 || puts("p") < 0)
    printf("bad return\n");
  expect("stdout", "x"); expect("stdout", "yz"); expect("stdout", "w"); expect("stdout", "p");
  run_formats();
  fflush(stdout);
}

static void run_lines(void) {
  printf("part one, ");
  fflush(stdout);
  write(1, "part two, ", 10);
  fputs("part three\n", stdout);                expect("stdout", "part one, part two, part three");
  write(1, "a\nb\n\nc", 6);                      expect("stdout", "a"); expect("stdout", "b"); expect_bytes("stdout", "", 0);
  write(1, "\n", 1);                             expect("stdout", "c");
  size_t big = 1 << 20;
  char *line = malloc(big + 1);
  for (size_t i = 0; i < big; i++) line[i] = (char)('a' + i % 26);
  line[big] = '\n';
  fwrite(line, 1, big + 1, stdout);
  for (size_t off = 0; off < big; off += 65536) expect_bytes("stdout", line + off, 65536);
  free(line);
  char bin[255];
  for (int i = 0, k = 0; i < 256; i++) if (i != '\n') bin[k++] = (char)i;
  fwrite(bin, 1, sizeof bin, stdout);
  putchar('\n');                                 expect_bytes("stdout", bin, sizeof bin);
  fprintf(stderr, "stderr without newline at exit");
  printf("stdout without newline at exit");
  expect("stderr", "stderr without newline at exit");
  expect("stdout", "stdout without newline at exit");
}

static void *thread_main(void *arg) {
  long t = (long)arg;
  for (int i = 0; i < 500; i++) {
    if (i % 2) printf("thread %ld line %d\n", t, i);
    else dprintf(1, "thread %ld line %d\n", t, i);
  }
  return NULL;
}

static void run_threads(void) {
  pthread_t th[4];
  for (long t = 0; t < 4; t++) pthread_create(&th[t], NULL, thread_main, (void *)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  for (int t = 0; t < 4; t++)
    for (int i = 0; i < 500; i++) expect("stdout", "thread %d line %d", t, i);
}

static void on_usr1(int sig) {
  (void)sig;
  static const char msg[] = "signal handler line\n";
  write(1, msg, sizeof msg - 1);
}

static void wait_child(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

static void run_procs(void) {
  printf("parent before fork, ");               /* partial: finished by the parent only */
  pid_t a = fork();
  if (a == 0) {
    printf("fork child exits\n");
    exit(0);
  }
  wait_child(a);
  pid_t b = fork();
  if (b == 0) {
    printf("fork child _exits without newline");
    _exit(0);
  }
  wait_child(b);
  printf("after\n");
  expect("stdout", "fork child exits");
  expect("stdout", "fork child _exits without newline");
  expect("stdout", "parent before fork, after");
  pid_t c;
  char *spawn_argv[] = {(char *)self, "child", "spawned", NULL};
  if (posix_spawn(&c, self, NULL, NULL, spawn_argv, environ) == 0) wait_child(c);
  expect("stdout", "spawned line 1"); expect("stderr", "spawned line 2");
  printf("parent partial before exec child, ");
  fflush(stdout);
  pid_t d = fork();
  if (d == 0) {
    execl(self, self, "child", "execd", (char *)NULL);
    _exit(127);
  }
  wait_child(d);
  printf("done\n");
  expect("stdout", "execd line 1"); expect("stderr", "execd line 2");
  expect("stdout", "parent partial before exec child, done");
  pid_t v = vfork();
  if (v == 0) {
    execl(self, self, "child", "vforked", (char *)NULL);
    _exit(127);
  }
  wait_child(v);
  expect("stdout", "vforked line 1"); expect("stderr", "vforked line 2");
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
  expect("stdout", "signal handler line");
}

static void run_syslog(const char *sock) {
  openlog("tgt", LOG_PID, LOG_LOCAL0);
  int pid = (int)getpid();
  syslog(LOG_INFO, "syslog %d", 1);             expect("syslog", "<%d>tgt[%d]: syslog 1", LOG_LOCAL0 | LOG_INFO, pid);
  pid_t child = fork(); /* the child's lines carry its own pid */
  if (child == 0) {
    syslog(LOG_INFO, "from a child");           expect("syslog", "<%d>tgt[%d]: from a child", LOG_LOCAL0 | LOG_INFO, (int)getpid());
    _exit(0);
  }
  waitpid(child, NULL, 0);
  errno = ENOENT;
  syslog(LOG_ERR | LOG_DAEMON, "with %%m: %m"); expect("syslog", "<%d>tgt[%d]: with %%m: %s", LOG_DAEMON | LOG_ERR, pid, strerror(ENOENT));
  setlogmask(LOG_UPTO(LOG_NOTICE));
  syslog(LOG_DEBUG, "masked out");
  my_vsyslog(LOG_WARNING, "vsyslog %s", "x");   expect("syslog", "<%d>tgt[%d]: vsyslog x", LOG_LOCAL0 | LOG_WARNING, pid);
  closelog();
  setlogmask(0xff);
  /* closelog forgets the ident only (glibc keeps the options and the facility) */
  syslog(LOG_NOTICE, "after closelog\n");       expect("syslog", "<%d>%s[%d]: after closelog", LOG_LOCAL0 | LOG_NOTICE, program_invocation_short_name, pid);
  if (!sock) return;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, sock, sizeof addr.sun_path - 1);
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) err(2, "connect %s", sock);
  const char d1[] = "<14>Dec  2 10:00:00 app: via send";
  send(s, d1, sizeof d1 - 1, 0);                expect("syslog", "%s", d1);
  const char d2[] = "<14>app: via write\n";
  write(s, d2, sizeof d2 - 1);                  expect("syslog", "<14>app: via write");
  struct iovec iov[2] = {{"<14>app: via ", 13}, {"sendmsg", 8}}; /* with its NUL, as Python sends */
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
  sendmsg(s, &mh, 0);                           expect("syslog", "<14>app: via sendmsg");
  close(s);
  int u = socket(AF_UNIX, SOCK_DGRAM, 0);
  const char d3[] = "<14>app: via sendto";
  sendto(u, d3, sizeof d3 - 1, 0, (struct sockaddr *)&addr, sizeof addr); expect("syslog", "%s", d3);
  close(u);
}

static void run_fds(const char *scratch) {
  int copy = dup(1);
  dprintf(copy, "via a dup of stdout\n");       expect("stdout", "via a dup of stdout");
  char path[4096];
  snprintf(path, sizeof path, "%s/reused.txt", scratch);
  close(1);
  int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644); /* takes number 1 */
  if (f != 1) errx(2, "expected fd 1, got %d", f);
  write(1, "into the file\n", 14);              /* not stdout any more */
  dup2(copy, 1);
  write(1, "stdout again\n", 13);               expect("stdout", "stdout again");
  int saved_err = dup(2);
  dup2(copy, 2);                                /* fd 2 now writes to the original stdout */
  write(2, "stderr number, stdout file\n", 27); expect("stdout", "stderr number, stdout file");
  dup2(saved_err, 2);
  close(saved_err);
  write(2, "stderr restored\n", 16);            expect("stderr", "stderr restored");
  close(copy);
  int g = open(path, O_WRONLY | O_APPEND);      /* likely reuses copy's number */
  dprintf(g, "appended to the file\n");
  close(g);
  FILE *e = fopen("/dev/stderr", "w");          /* reopening the original stderr */
  fprintf(e, "via /dev/stderr\n");              expect("stderr", "via /dev/stderr");
  fclose(e);
}

static void run_socket(void) {
  send(1, "send\n", 5, 0);                      expect("stdout", "send");
  sendto(1, "sendto\n", 7, 0, NULL, 0);         expect("stdout", "sendto");
  struct iovec iov[2] = {{"send", 4}, {"msg\n", 4}};
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
  sendmsg(1, &mh, 0);                           expect("stdout", "sendmsg");
  printf("printf on a socket\n");               expect("stdout", "printf on a socket");
}

static void run_seek(void) {
  pwrite(1, "pwrite\n", 7, 0);                  expect("stdout", "pwrite");
  struct iovec iov[2] = {{"pwr", 3}, {"itev\n", 5}};
  pwritev(1, iov, 2, 0);                        expect("stdout", "pwritev");
}

int main(int argc, char **argv) {
  self = argv[0];
  const char *mode = argc > 1 ? argv[1] : "stdio";
  if (strcmp(mode, "stdio") == 0) run_stdio();
  else if (strcmp(mode, "lines") == 0) run_lines();
  else if (strcmp(mode, "threads") == 0) run_threads();
  else if (strcmp(mode, "procs") == 0) run_procs();
  else if (strcmp(mode, "syslog") == 0) run_syslog(argc > 2 ? argv[2] : NULL);
  else if (strcmp(mode, "fds") == 0) run_fds(argc > 2 ? argv[2] : "/tmp");
  else if (strcmp(mode, "socket") == 0) run_socket();
  else if (strcmp(mode, "seek") == 0) run_seek();
  else if (strcmp(mode, "child") == 0) {
    printf("%s line 1\n", argv[2]);
    fprintf(stderr, "%s line 2\n", argv[2]);
  } else if (strcmp(mode, "many") == 0) {
    /* N numbered lines of about 100 bytes: more than a small disk holds. */
    for (int i = 0, n = atoi(argv[2]); i < n; i++) printf("line %08d %087d\n", i, 0);
  } else if (strcmp(mode, "crash") == 0) {
    /* A whole line, then one cut short by a fatal signal (abort, or a real fault). */
    printf("before the crash\n");
    printf("cut short by SIG%s", argv[2]);
    if (strcmp(argv[2], "ABRT") == 0) abort();
    *(volatile int *)(uintptr_t)argc = 0;
  } else if (strcmp(mode, "exit") == 0) {
    printf("exiting\n");
    errx(atoi(argv[2]), "exit code %s", argv[2]);
  } else {
    errx(2, "unknown mode %s", mode);
  }
  return 0;
}
