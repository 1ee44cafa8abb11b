// The semaphores of the USDT probes declared in probes.h, in the .probes section where sys/sdt.h
// consumers (libbpf, bpftrace, perf) expect them. Each pair's two 16-bit semaphores are the two
// halves of one 32-bit word, so that COMET_PROBE_PAIR_ENABLED reads both at once; the per-probe
// symbols that the notes name are assembler aliases into that word.
#include "probes.h"

#define COMET_PROBE_DEFINE_(op)                                                    \
  extern "C" {                                                                     \
  unsigned int comet_##op##_semaphores = 0;                                        \
  }                                                                                \
  __asm__(".globl comet_" #op "_start_semaphore\n"                                 \
          ".hidden comet_" #op "_start_semaphore\n"                                \
          ".set comet_" #op "_start_semaphore, comet_" #op "_semaphores\n"         \
          ".globl comet_" #op "_done_semaphore\n"                                  \
          ".hidden comet_" #op "_done_semaphore\n"                                 \
          ".set comet_" #op "_done_semaphore, comet_" #op "_semaphores + 2\n");
COMET_PROBE_PAIRS(COMET_PROBE_DEFINE_)
