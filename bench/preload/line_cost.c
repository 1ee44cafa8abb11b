// comet_line_cost: what one 100-byte log line costs the program that writes it. Run under the
// LD_PRELOAD shim it measures a captured line; run without it, the same call writing to a file,
// to /dev/null, or (syslog-socket) the work of syslog(): a formatted datagram sent to a local
// socket. Every line is timed on its own; the percentiles go to RESULT (the program's stdout
// and stderr may be captured).
//
//   comet_line_cost MODE COUNT RESULT
//   MODE: printf | fwrite | write | syslog | syslog-socket
//   RESULT gets one line: "MODE COUNT p50_ns p90_ns p99_ns mean_ns"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int64_t NowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int CompareI64(const void* a, const void* b) {
  const int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
  return (x > y) - (x < y);
}

// Drains the receiving end of the syslog-socket mode so sends never block.
static void* Drain(void* arg) {
  const int fd = *(const int*)arg;
  char buf[512];
  while (recv(fd, buf, sizeof buf, 0) >= 0) {
  }
  return NULL;
}

static int Usage(void) {
  fprintf(stderr, "usage: comet_line_cost printf|fwrite|write|syslog|syslog-socket COUNT RESULT\n");
  return 2;
}

enum Mode { kPrintf, kFwrite, kWrite, kSyslog, kSyslogSocket, kModes };
static const char* const kModeNames[kModes] = {"printf", "fwrite", "write", "syslog", "syslog-socket"};

// What syslog() does for a message: "<PRI>Mmm dd hh:mm:ss ident: message" sent to a socket.
static int SendSyslogDatagram(int fd, const char* line) {
  char dgram[160];
  const time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  int n = snprintf(dgram, sizeof dgram, "<14>");
  n += (int)strftime(dgram + n, sizeof dgram - (size_t)n, "%h %e %T ", &tm);
  n += snprintf(dgram + n, sizeof dgram - (size_t)n, "line_cost: %.*s", 99, line);
  return send(fd, dgram, (size_t)n, 0) < 0 ? -1 : 0;
}

int main(int argc, char** argv) {
  if (argc != 4) return Usage();
  int mode = kModes;
  for (int m = 0; m < kModes; m++) {
    if (strcmp(argv[1], kModeNames[m]) == 0) mode = m;
  }
  const long count = strtol(argv[2], NULL, 10);
  if (mode == kModes || count <= 0) return Usage();
  char line[101];
  memset(line, 'x', 99);
  memcpy(line, "line cost sample ", 17);
  line[99] = '\n';
  line[100] = '\0';
  int sock[2] = {-1, -1};
  pthread_t drainer;
  if (mode == kSyslog) openlog("line_cost", LOG_NDELAY, LOG_USER);
  if (mode == kSyslogSocket) {
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sock) != 0) return 1;
    pthread_create(&drainer, NULL, Drain, &sock[1]);
  }
  int64_t* ns = malloc(sizeof(int64_t) * (size_t)count);
  if (!ns) return 1;
  for (long i = 0; i < count; i++) {
    const int64_t t0 = NowNs();
    int failed = 0;
    switch (mode) {
      case kPrintf: printf("%.*s\n", 99, line); break;
      case kFwrite: fwrite(line, 1, 100, stdout); break;
      case kWrite: failed = write(1, line, 100) != 100; break;
      case kSyslog: syslog(LOG_INFO, "%.*s", 99, line); break;
      case kSyslogSocket: failed = SendSyslogDatagram(sock[0], line) != 0; break;
    }
    ns[i] = NowNs() - t0;
    if (failed) return 1;
  }
  fflush(stdout);
  double sum = 0;
  for (long i = 0; i < count; i++) sum += (double)ns[i];
  qsort(ns, (size_t)count, sizeof ns[0], CompareI64);
  FILE* out = fopen(argv[3], "w");
  if (!out) return 1;
  fprintf(out, "%s %ld %lld %lld %lld %.0f\n", kModeNames[mode], count, (long long)ns[count / 2],
          (long long)ns[count * 9 / 10], (long long)ns[count * 99 / 100], sum / (double)count);
  fclose(out);
  return 0;
}
