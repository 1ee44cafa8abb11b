/* What one append touches: a program for bench/touch/append_touch.sh, which runs it under
 * valgrind's lackey (every instruction fetch and data access traced) and counts the distinct
 * 4 KiB pages and 64-byte cache lines between the markers below, by mapping.
 *
 * After each write(2) on a machine whose kernel empties the TLB at every system call (page-table
 * isolation without PCID), every distinct page an append touches costs a page walk, and every
 * line the system call evicted a cache miss: these counts are that bill.
 *
 *   append_touch DIR ROUNDS API     API = stream (comet_stream_append) or name (comet_append)
 *
 * Prints the markers' address, then this process's /proc/self/maps, for the script. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comet/comet.h"

/* The script finds each append between a store to begin and a store to end. */
volatile unsigned long marker[16] __attribute__((aligned(64)));

static void dump_maps(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) fprintf(stderr, "MAP %s", line);
  if (f) fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s DIR ROUNDS stream|name\n", argv[0]);
    return 2;
  }
  const int rounds = atoi(argv[2]);
  const int by_name = strcmp(argv[3], "name") == 0;
  comet_client* c = NULL;
  comet_stream* s = NULL;
  comet_config* cfg = comet_config_new();
  if (!cfg || comet_config_set(cfg, "sync.mode", "none") != COMET_OK ||
      comet_open(argv[1], cfg, &c) != COMET_OK ||
      comet_stream_open(c, "touch:shard:0000", &s) != COMET_OK) {
    fprintf(stderr, "setup: %s\n", comet_last_error());
    return 1;
  }
  comet_config_free(cfg);
  int null_fd = open("/dev/null", O_WRONLY);
  char line[100];
  memset(line, 'x', sizeof line);
  const void* data = line;
  const size_t len = sizeof line;
  for (int i = 0; i < 2000 + rounds; i++) {
    const int timed = i >= 2000;
    if (write(null_fd, line, sizeof line) < 0) return 1;
    if (timed) marker[0] = (unsigned long)i;
    int rc = by_name ? comet_append(c, "touch:shard:0000", &data, &len, 1, NULL)
                     : comet_stream_append(s, &data, &len, 1, NULL);
    if (timed) marker[8] = (unsigned long)i;
    if (rc != COMET_OK) {
      fprintf(stderr, "append: %s\n", comet_last_error());
      return 1;
    }
  }
  fprintf(stderr, "MARKERS %lx %lx\n", (unsigned long)&marker[0], (unsigned long)&marker[8]);
  dump_maps();
  comet_close(c);
  return 0;
}
