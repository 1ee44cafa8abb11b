/* Comet C ABI: a stable interface for C servers and other languages.
 *
 * Conventions:
 *  - Opaque handles (comet_config, comet_client, comet_scan, comet_consumer); the caller frees
 *    what it creates.
 *    A comet_stream belongs to its client.
 *  - Byte strings are pointer + length; names are NUL-terminated UTF-8/ASCII.
 *  - Every function returns COMET_OK (0) or a negative COMET_ERR_* code; no exception or signal
 *    crosses this boundary. After a failure, comet_last_error() returns a message for this
 *    thread naming what failed and where (path, stream, shard, entry, offset).
 *  - A comet_client is thread-safe; a comet_config is not.
 *  - libcomet.so (SONAME libcomet.so.1) exports exactly the functions declared here, under the
 *    symbol version COMET_1; a later library of the same major version runs programs built
 *    against an earlier header of that major version.
 */
#ifndef COMET_COMET_H_
#define COMET_COMET_H_

#include <stddef.h>
#include <stdint.h>

/* The version of this header: the major version changes only with an incompatible ABI, the
   minor version when calls are added, the patch version for fixes. */
#define COMET_VERSION_MAJOR 1
#define COMET_VERSION_MINOR 2
#define COMET_VERSION_PATCH 0
/* One number, ordered like the versions: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define COMET_VERSION \
  (COMET_VERSION_MAJOR * 10000 + COMET_VERSION_MINOR * 100 + COMET_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
/* Everything declared below is the exported interface, whatever visibility Comet is built with. */
#pragma GCC visibility push(default)
#endif

/* The version of the library linked at run time, encoded like COMET_VERSION (which is the
   header's): a program checks comet_version() / 10000 == COMET_VERSION_MAJOR and
   comet_version() >= COMET_VERSION before relying on calls added in its minor version.
   Thread-safe. */
int comet_version(void);

typedef struct comet_config comet_config;
typedef struct comet_client comet_client;

/* prefix_id: the stream prefix's number in this data directory, assigned by Comet, stable for
   the directory's life, so an id names one entry of one stream unambiguously. */
typedef struct comet_id {
  uint32_t prefix_id;
  uint32_t shard;
  uint64_t entry;
} comet_id;

enum {
  COMET_OK = 0,
  COMET_ERR_INVALID = -1,
  COMET_ERR_IO = -2,
  COMET_ERR_CORRUPT = -3,
  COMET_ERR_NOT_OWNER = -4,
  COMET_ERR_CLOSED = -5,
  COMET_ERR_FULL = -6,
  COMET_ERR_TOO_LARGE = -7,
  COMET_ERR_NOT_FOUND = -8,
  COMET_ERR_TIMEOUT = -9,
  COMET_ERR_VERSION = -10,
  COMET_ERR_NOMEM = -11 /* out of memory */
};

/* Configuration: defaults, then string keys ("sync.mode", "always"). Unknown keys and bad
   values fail with COMET_ERR_INVALID. */
comet_config *comet_config_new(void);
int comet_config_set(comet_config *cfg, const char *key, const char *value);
void comet_config_free(comet_config *cfg);

/* Opens (creating if needed) a data directory; cfg NULL means defaults. *out is set only on
   success. */
int comet_open(const char *dir, const comet_config *cfg, comet_client **out);
/* Flushes per sync.mode, releases everything and frees c. */
int comet_close(comet_client *c);

/* Appends n entries to a stream ("<prefix>:shard:<NNNN>"), all or nothing. ids_out, if not
   NULL, receives n ids in input order. n above COMET_MAX_BATCH is COMET_ERR_INVALID. */
#define COMET_MAX_BATCH 16777216
int comet_append(comet_client *c, const char *stream, const void *const *data, const size_t *lens,
                 size_t n, comet_id *ids_out);
/* Makes everything appended so far durable (fdatasync). */
int comet_sync(comet_client *c);
/* Copies entry `entry` of `stream` into buf. COMET_ERR_TOO_LARGE if cap is short (then
   *len_out, if not NULL, holds the size needed). timestamp_ns_out may be NULL. */
int comet_read(comet_client *c, const char *stream, uint64_t entry, void *buf, size_t cap,
               size_t *len_out, int64_t *timestamp_ns_out);
/* The next entry number of a stream (0 if it has no entries). */
int comet_length(comet_client *c, const char *stream, uint64_t *out);

/* Stream handles: a stream resolved once, so a hot caller appends without parsing its name.
   Thread-safe like the client: many threads may append through one handle. */
typedef struct comet_stream comet_stream;   /* owned by the client; valid until comet_close */
/* Sets *out to the handle of `name` ("<prefix>:shard:<NNNN>"), creating the stream if it does
   not exist (a read-only client gets COMET_ERR_NOT_FOUND instead). Opening the same name again
   returns the same handle. Never free it: comet_close does. */
int comet_stream_open(comet_client *c, const char *name, comet_stream **out);
/* comet_append through a handle: n entries, all or nothing; ids_out, if not NULL, receives n
   ids in input order. After comet_close the handle is gone: never pass it again. */
int comet_stream_append(comet_stream *s, const void *const *data, const size_t *lens, size_t n,
                        comet_id *ids_out);

/* One entry delivered by a scan (and by the consumer calls). `data` and `stream` are views
   owned by the call that filled the message; see that call for how long they stay valid. */
typedef struct comet_message {
  comet_id id;
  int64_t timestamp_ns;
  const void *data;
  size_t len;
  const char *stream;
} comet_message;

/* Scans: a stream read in entry order from a starting entry, many entries per call, without a
   copy. A scan is used by one thread at a time; different scans may run in parallel. It may
   outlive its client: after comet_close, comet_scan_next returns COMET_ERR_CLOSED (a wait in
   progress then returns within about 10 ms), and it must still be closed. */
typedef struct comet_scan comet_scan;
/* Sets *out to a scan of `stream` whose first entry read is from_entry (entries before the
   first retained one and in gaps are skipped). COMET_ERR_NOT_FOUND if the stream does not
   exist; the scan is the caller's, freed by comet_scan_close. */
int comet_scan_open(comet_client *c, const char *stream, uint64_t from_entry, comet_scan **out);
/* Fills up to max messages (zero-copy views, valid until the next call on this scan or its
   close); waits up to timeout_ns for the first (0: don't wait, negative: forever).
   Returns the count (>= 0) or a COMET_ERR_*. Damaged entries are skipped and counted.
   A count of 0 means no entry arrived within timeout_ns. The wait sleeps on the control
   region's futex, woken by the writer of any process. */
int comet_scan_next(comet_scan *it, comet_message *out, size_t max, int64_t timeout_ns);
/* Browsing (none of these touches a consumer group's offsets): a scan of the last n entries of
   `stream` (from n entries before its current end, or its first entry if it holds fewer; then
   read it like any scan, which also follows later appends); comet_scan_open for a scan from an
   id; comet_inspect for the oldest and newest timestamps; comet_list_group_offsets for the lag
   of every group in every stream. */
int comet_scan_last(comet_client *c, const char *stream, uint64_t n, comet_scan **out);
/* The entry number the next comet_scan_next reads first. */
uint64_t comet_scan_position(const comet_scan *it);
/* How many damaged entries (failing their CRC) this scan has skipped so far. */
uint64_t comet_scan_skipped(const comet_scan *it);
/* Frees the scan (NULL is accepted); the views it delivered become invalid. */
int comet_scan_close(comet_scan *it);

/* Consumer groups: durable read positions shared by every process of the directory, with
   at-least-once delivery. A group (1 to 255 bytes, created on first use) has one committed
   offset per stream: every entry below it was acked. Offsets live in the control region and in
   a checksummed file per group (DIR/groups/), written per sync.mode, so they survive crashes,
   restarts and a lost control file.
   A comet_consumer is used by one thread at a time; consumers of one group may run in many
   threads and processes (each delivers what it reads: split streams among them yourself).
   It must be closed before its client; after comet_close its calls return COMET_ERR_CLOSED
   (comet_consumer_close still frees it). Added in version 1.1. */
typedef struct comet_consumer comet_consumer;
/* Joins `group` on a writable client and sets *out (the caller's; free it with
   comet_consumer_close). COMET_ERR_INVALID for a name that is empty or longer than 255 bytes,
   or a read-only client; COMET_ERR_FULL when the group table is full (consumers.max_groups). */
int comet_consumer_open(comet_client *c, const char *group, comet_consumer **out);
/* Fills up to max messages not yet delivered by this consumer from the streams `pattern` names:
   one stream ("events:shard:0003") or every shard of a prefix ("events:shard:*", the prefix
   matched exactly; shards created later are found), from the group's committed offset, each
   stream in entry order. Waits up to timeout_ms for the first (0: don't wait, negative:
   forever), sleeping on the control region's futexes, woken by the writer of any process.
   Returns the count (>= 0; 0 on timeout) or a COMET_ERR_*: COMET_ERR_INVALID for a pattern
   that is neither a stream name nor "<prefix>:shard:*". The messages are zero-copy views
   (data, and stream as a NUL-terminated name), valid until the next comet_consumer_read or
   comet_consumer_close of this consumer. Damaged entries are passed over and counted. */
int comet_consumer_read(comet_consumer *k, const char *pattern, comet_message *out, size_t max,
                        int timeout_ms);
/* Acks n delivered ids (a message's id): commits each stream's offset up to its first entry
   this consumer delivered and did not ack (acks out of order are held until the gap closes).
   Acking an id again is harmless; an id this consumer never delivered is COMET_ERR_INVALID
   (the other ids of the call are still acked). The ids are copied: the caller keeps them. */
int comet_consumer_ack(comet_consumer *k, const comet_id *ids, size_t n);
/* Sets *lag_out to the entries stored and not yet committed by the group, summed over the
   streams `pattern` names (0 when none exists). */
int comet_consumer_lag(comet_consumer *k, const char *pattern, uint64_t *lag_out);
/* Commits what is acked, writes the group's file per sync.mode and frees k (NULL is accepted).
   Entries delivered and not acked are delivered again to the next consumer of the group. */
int comet_consumer_close(comet_consumer *k);

/* The directory from C: what `comet inspect`, `comet stats` and `comet verify` show.
   Structs are versioned by size: the caller passes sizeof its struct; the library fills the
   fields it knows that fit (fields are only ever added at the end), zeroes the rest, and sets
   `size` to the bytes it filled. A size below 8 is COMET_ERR_INVALID. Thread-safe. */

/* Receives one text item (a stream name, a problem, a report line); the text is valid during
   the call only. */
typedef void (*comet_text_fn)(void *arg, const char *text);

/* Calls fn for every stream of the directory, sorted by prefix then shard, and returns how many
   (>= 0) or a COMET_ERR_*. */
int comet_list_streams(comet_client *c, comet_text_fn fn, void *arg);

typedef struct comet_stream_info {
  uint32_t size;             /* bytes filled by the library */
  uint32_t prefix_id;
  uint32_t shard;
  uint32_t reserved;
  uint64_t first_entry;      /* first readable entry */
  uint64_t next_entry;       /* entries [first_entry, next_entry) exist, less any gaps */
  uint64_t segments;
  uint64_t entries;          /* entries the segments hold */
  uint64_t bytes;            /* bytes of records (headers included, segment headers not) */
  uint64_t gaps;             /* ranges of entries whose segment is missing */
  uint64_t missing_entries;  /* entries in those ranges */
  uint64_t corrupt_records;  /* damaged records found so far */
  /* Since 1.1: the append timestamps (ns since the epoch) of the oldest and newest readable
     entries, and those entries; all 0 when no entry can be read. */
  int64_t oldest_ns;
  int64_t newest_ns;
  uint64_t oldest_entry;
  uint64_t newest_entry;
} comet_stream_info;
/* Fills *out for one stream (COMET_ERR_NOT_FOUND if it does not exist). */
int comet_inspect(comet_client *c, const char *stream, comet_stream_info *out, size_t size);

/* The directory's counters as its control region holds them, summed over every process that
   uses it (what `comet stats` shows). */
typedef struct comet_stats {
  uint32_t size;             /* bytes filled by the library */
  uint32_t live_processes;   /* processes using the directory now */
  uint64_t streams;
  uint64_t appended_entries;
  uint64_t appended_bytes;   /* payload bytes before compression */
  uint64_t stored_bytes;     /* payload bytes as stored */
  uint64_t compressed_entries;
  uint64_t rotations;
  uint64_t syncs;
  uint64_t failed_appends;
  uint64_t corrupt_records;
  uint64_t torn_tails;       /* torn tails truncated by recovery */
  uint64_t gaps;
  uint64_t takeovers;        /* shards taken over from dead processes */
  uint64_t rebuilds;         /* control region rebuilds */
  /* Since 1.2: retention passes by every process, and what they deleted. */
  uint64_t retention_passes;
  uint64_t retention_segments;
  uint64_t retention_entries;
  uint64_t retention_bytes;
  uint64_t retention_unconsumed; /* entries deleted before some group had consumed them */
  int64_t retention_last_ns;     /* wall clock of the last pass (0: none yet) */
} comet_stats;
int comet_get_stats(comet_client *c, comet_stats *out, size_t size);

/* What one retention pass deleted (since 1.2). Versioned by size like the structs above. */
typedef struct comet_retention_report {
  uint32_t size;             /* bytes filled by the library */
  uint32_t reserved;
  uint64_t segments;         /* segment files deleted */
  uint64_t entries;
  uint64_t bytes;
  uint64_t unconsumed;       /* entries deleted before some group had consumed them */
} comet_retention_report;
/* Runs a retention pass over the whole directory now, with the retention.* keys of the config
   the client was opened with (nothing is deleted unless a limit is set), and fills *out (if not
   NULL; size is sizeof *out). Waits while another thread or process runs a pass: one runs at a
   time per directory. Thread-safe. COMET_ERR_INVALID for a read-only client. Deleted entries
   read as COMET_ERR_NOT_FOUND afterwards; views already returned stay valid. */
int comet_retention_run(comet_client *c, comet_retention_report *out, size_t size);

/* One consumer group's position in one stream, as the control region holds it (since 1.1).
   Versioned by size like the structs above; the strings are valid during the callback only. */
typedef struct comet_group_offset {
  uint32_t size;             /* bytes filled by the library */
  uint32_t prefix_id;
  uint32_t shard;
  uint32_t reserved;
  const char *group;
  const char *stream;
  uint64_t committed;        /* the next entry the group delivers; every entry below is acked */
  uint64_t next_entry;       /* the stream's next entry number */
  uint64_t lag;              /* entries stored and not yet committed by the group */
  uint64_t skipped;          /* entries the group passed over unread (damaged or deleted) */
  int64_t updated_ns;        /* wall clock of its last commit (0: never) */
} comet_group_offset;
typedef void (*comet_group_offset_fn)(void *arg, const comet_group_offset *offset);
/* Calls fn for every (group, stream) offset of the directory, sorted by group then stream, and
   returns how many (>= 0) or a COMET_ERR_*. Joins no group and commits nothing (what
   `comet groups` prints). */
int comet_list_group_offsets(comet_client *c, comet_group_offset_fn fn, void *arg);

/* Checks the CRC of every record of every stream (reads every segment: slow on a big
   directory). Calls problem (if not NULL) once per problem found, naming the file and offset,
   and sets *corrupt_out (if not NULL) to the number of unreadable records. Missing segments
   are counted by comet_inspect and comet_get_stats, not here. */
int comet_verify(comet_client *c, comet_text_fn problem, void *arg, uint64_t *corrupt_out);

/* Calls fn once per line of what opening the directory found and repaired (torn tails, damaged
   records, gaps, a rebuilt control file) and of later takeovers of dead processes' shards;
   returns the number of lines (0 for a clean directory). */
int comet_recovery_report(comet_client *c, comet_text_fn fn, void *arg);

/* Multi-process mode (config "concurrency.mode" = "multi"): writes into buf the stream
   "<prefix>:shard:<NNNN>" that `key` routes to among the shard_count shards assigned to this
   process, so an append to it does not get COMET_ERR_NOT_OWNER. In single mode, the same as
   comet_stream_name(prefix, comet_pick_shard(key, len, shard_count)). COMET_ERR_TOO_LARGE if
   cap is short; COMET_ERR_NOT_OWNER if this process is assigned none of them. */
int comet_pick_stream(comet_client *c, const char *prefix, const void *key, size_t len,
                      uint32_t shard_count, char *buf, size_t cap);
/* Blocks until entry `entry` of `stream` exists (appended by any process) or timeout_ns passes
   (COMET_ERR_TIMEOUT; negative waits forever). COMET_ERR_NOT_FOUND, at once, for a stream that
   does not exist: waiting creates nothing. */
int comet_wait(comet_client *c, const char *stream, uint64_t entry, int64_t timeout_ns);

/* Stable key -> shard routing (jump consistent hash); shard_count 0 means 16. */
uint32_t comet_pick_shard(const void *key, size_t len, uint32_t shard_count);
/* Writes "<prefix>:shard:<NNNN>" into buf; COMET_ERR_TOO_LARGE if cap is short. */
int comet_stream_name(const char *prefix, uint32_t shard, char *buf, size_t cap);

/* A static name for an error code ("COMET_ERR_NOT_FOUND"). */
const char *comet_strerror(int err);
/* This thread's message for its last failure ("" if none). Valid until this thread's next
   Comet call. */
const char *comet_last_error(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* COMET_COMET_H_ */
