// Exported internal header (lib/export/): the benchmarks place probe sites of their own to
// measure what a site costs.
// USDT probe sites (provider "comet"), for `comet probe`, bpftrace, perf and any other USDT
// consumer. Each site is one line:
//
//   COMET_PROBE(append_start, prefix_id, shard, entries, bytes);
//
// A site is the standard sys/sdt.h 1-byte `nop` plus a note describing where its arguments live
// (not the 5-byte nop form, which uprobes cannot always replace safely). Every probe has a
// semaphore (a counter in .probes that the kernel raises while a uprobe is attached), and a site
// evaluates its arguments only when its semaphore is non-zero: a detached probe costs one load
// and one not-taken branch.
//
// The argument contract (comet/bpf_abi.h numbers the operations; README lists every probe):
//   <op>_start(prefix_id, shard, entries, bytes)
//   <op>_done (prefix_id, shard, entries, bytes, status[, weight])
// prefix_id and shard are u32 (COMET_PROBE_ALL, 0xFFFFFFFF, when the operation spans every
// shard); entries and bytes are u64 and say what the operation handled (the `done` values are
// final; `start` gives what is known then); status is the operation's comet::Code (0 = OK).
// append_done and read_done add `weight` (u32): the calls this one stands for, since those two
// fire on one call in metrics.probe_sample.
// A start/done pair always runs on one thread.
//
// To add a probe pair: add its operation to COMET_PROBE_PAIRS (and a COMET_OP_* number in
// comet/bpf_abi.h if `comet probe` should time it); the semaphores are defined in probes.cc.
#pragma once

#include <cstdint>

#ifndef COMET_NO_PROBES
#define _SDT_HAS_SEMAPHORES 1
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>
#endif

// Every probe is a pair, <op>_start and <op>_done.
#define COMET_PROBE_PAIRS(X)                                                   \
  X(append)    /* Client::Append, comet_append: one pair per call */           \
  X(sync)      /* Client::Sync, comet_sync */                                  \
  X(commit)    /* a shard's group-commit write-back */                         \
  X(rotate)    /* a new segment for the writer */                              \
  X(prealloc)  /* a spare segment prepared off the hot path */                 \
  X(prefault)  /* pages pre-faulted ahead of the writer */                     \
  X(read)      /* Client::Read, comet_read */                                  \
  X(wait)      /* a reader blocked until an entry arrives */                   \
  X(takeover)  /* multi-process: this process takes a shard */                 \
  X(rebalance) /* multi-process: ownership recomputed */                       \
  X(recovery)  /* a shard loaded for writing (torn tail, damage) */

namespace comet::internal {
inline constexpr uint32_t kProbeAll = 0xFFFFFFFFu;
}  // namespace comet::internal

// A pair's two semaphores are the two halves of one aligned 32-bit word, `comet_<op>_semaphores`
// (probes.cc), so that a site guarding both reads one word. Hidden: a site reads them
// RIP-relative, not through the GOT (consumers find them through the notes, not by symbol).
#define COMET_PROBE_SEMAPHORE(name) comet_##name##_semaphore
#define COMET_PROBE_DECLARE_(op)                                                          \
  extern "C" __extension__ unsigned short comet_##op##_start_semaphore                    \
      __attribute__((unused, section(".probes"), visibility("hidden")));                  \
  extern "C" __extension__ unsigned short comet_##op##_done_semaphore                     \
      __attribute__((unused, section(".probes"), visibility("hidden")));                  \
  extern "C" unsigned int comet_##op##_semaphores                                         \
      __attribute__((section(".probes"), visibility("hidden"), aligned(4)));
COMET_PROBE_PAIRS(COMET_PROBE_DECLARE_)

#ifdef COMET_NO_PROBES
#define COMET_PROBE_ENABLED(name) false
#define COMET_PROBE_PAIR_ENABLED(op) false
#define COMET_PROBE(name, ...) \
  do {                         \
  } while (0)
#else
// True while a consumer is attached to the probe (read with a volatile load: the kernel changes
// it under the compiler's feet).
#define COMET_PROBE_ENABLED(name) \
  __builtin_expect(*(volatile unsigned short*)&COMET_PROBE_SEMAPHORE(name) != 0, 0)
// True while a consumer is attached to either probe of the pair `op` (one load).
#define COMET_PROBE_PAIR_ENABLED(op) \
  __builtin_expect(*(volatile unsigned int*)&comet_##op##_semaphores != 0, 0)
#define COMET_PROBE(name, ...)                                           \
  do {                                                                   \
    if (COMET_PROBE_ENABLED(name)) STAP_PROBEV(comet, name, __VA_ARGS__); \
  } while (0)
#endif
