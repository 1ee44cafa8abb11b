/* A C99 program that uses Comet through comet.h and libcomet.so alone: it checks the library's
 * version against the header's, appends 100 entries to c99:shard:0000 of DIR through a stream
 * handle in batches of 10, scans them back 16 at a time, consumes them as group "c99" (reads
 * 16 at a time, acks each batch, then checks the group's lag is 0), runs a retention pass
 * (no limit is set: it deletes nothing), and prints
 * "version=V appended=A scanned=S consumed=C". Exit 1 on a failed call, 3 on a version
 * mismatch.
 *
 *   comet_c_client DIR
 */
#include <stdio.h>
#include <string.h>

#include "comet/comet.h"

static int die(const char *what) {
  fprintf(stderr, "comet_c_client: %s: %s\n", what, comet_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: comet_c_client DIR\n");
    return 2;
  }
  const int version = comet_version();
  if (version / 10000 != COMET_VERSION_MAJOR || version < COMET_VERSION) {
    fprintf(stderr, "comet_c_client: library version %d, header %d\n", version, COMET_VERSION);
    return 3;
  }
  comet_client *c = NULL;
  if (comet_open(argv[1], NULL, &c) != COMET_OK) return die("comet_open");
  comet_stream *s = NULL;
  if (comet_stream_open(c, "c99:shard:0000", &s) != COMET_OK) return die("comet_stream_open");

  enum { kEntries = 100, kBatch = 10 };
  char text[kEntries][16];
  int appended = 0;
  for (int b = 0; b < kEntries; b += kBatch) {
    const void *data[kBatch];
    size_t lens[kBatch];
    comet_id ids[kBatch];
    for (int i = 0; i < kBatch; i++) {
      snprintf(text[b + i], sizeof text[b + i], "entry %d", b + i);
      data[i] = text[b + i];
      lens[i] = strlen(text[b + i]);
    }
    if (comet_stream_append(s, data, lens, kBatch, ids) != COMET_OK) return die("append");
    for (int i = 0; i < kBatch; i++) appended += ids[i].entry == (uint64_t)(b + i);
  }

  comet_scan *it = NULL;
  if (comet_scan_open(c, "c99:shard:0000", 0, &it) != COMET_OK) return die("comet_scan_open");
  comet_message m[16];
  int scanned = 0, n;
  while ((n = comet_scan_next(it, m, 16, 0)) > 0) {
    for (int i = 0; i < n; i++) {
      const uint64_t e = m[i].id.entry;
      scanned += e < kEntries && m[i].len == strlen(text[e]) &&
                 memcmp(m[i].data, text[e], m[i].len) == 0 && strcmp(m[i].stream, "c99:shard:0000") == 0;
    }
  }
  if (n < 0) return die("comet_scan_next");
  comet_scan_close(it);

  comet_consumer *k = NULL;
  if (comet_consumer_open(c, "c99", &k) != COMET_OK) return die("comet_consumer_open");
  int consumed = 0;
  while ((n = comet_consumer_read(k, "c99:shard:*", m, 16, 0)) > 0) {
    comet_id ids[16];
    for (int i = 0; i < n; i++) {
      const uint64_t e = m[i].id.entry;
      consumed += e < kEntries && m[i].len == strlen(text[e]) &&
                  memcmp(m[i].data, text[e], m[i].len) == 0;
      ids[i] = m[i].id;
    }
    if (comet_consumer_ack(k, ids, (size_t)n) != COMET_OK) return die("comet_consumer_ack");
  }
  if (n < 0) return die("comet_consumer_read");
  uint64_t lag = 1;
  if (comet_consumer_lag(k, "c99:shard:*", &lag) != COMET_OK) return die("comet_consumer_lag");
  if (lag != 0) consumed = -1;
  if (comet_consumer_close(k) != COMET_OK) return die("comet_consumer_close");
  comet_retention_report r;
  if (comet_retention_run(c, &r, sizeof r) != COMET_OK) return die("comet_retention_run");
  if (r.size != sizeof r || r.segments != 0) consumed = -2; /* no limit set: nothing deleted */
  if (comet_close(c) != COMET_OK) return die("comet_close");
  printf("version=%d appended=%d scanned=%d consumed=%d\n", version, appended, scanned,
         consumed);
  return 0;
}
