// The library's side of the pinned export map (struct comet_export in comet/bpf_abi.h): the
// histograms every writing client keeps in the control region, also added into a BPF
// array map that `comet probe` created and pinned (BPF_F_MMAPABLE), so that bpftool shows them
// with no probe attached. The map is found with bpf(2) BPF_OBJ_GET and mapped into the process;
// updates are atomic adds into that mapping, no system call and no libbpf.
//
// Thread safety: Add may run on any thread; Open and the mapping's lifetime belong to the
// client (a mapping stays until the client is destroyed, even after its pin is removed).
#pragma once

extern "C" {
#include <linux/types.h>
}
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "comet/format.h"
#include "comet/bpf_abi.h"
#include "env.h"

namespace comet::internal {

static_assert(format::kOpCount == COMET_EXPORT_OPS, "export ops follow the control region's");
static_assert(format::kHistogramBuckets == COMET_HIST_SLOTS);

class ExportMap {
 public:
  // Maps DIR/comet_export if it is pinned, is an export map of this layout (array of one
  // comet_export, mmapable) and `comet probe` initialised it; null otherwise (no pin, no
  // permission, another layout): exporting is best effort and never fails an open.
  static std::unique_ptr<ExportMap> Open(const std::string& pin_dir);
  ~ExportMap();
  ExportMap(const ExportMap&) = delete;
  ExportMap& operator=(const ExportMap&) = delete;

  comet_export* get() const { return map_; }
  // True if the pin at DIR/comet_export is still the file this mapping came from.
  bool StillPinned(const std::string& pin_dir) const;

  // Adds one timed operation that stands for `weight` operations, as ShardContext::Record does
  // in the control region. REQUIRES: op < COMET_EXPORT_OPS, bucket < COMET_HIST_SLOTS.
  static void Add(comet_export* x, uint32_t op, unsigned bucket, uint64_t ns, uint64_t weight) {
    comet_export_op& o = x->op[op];
    __atomic_fetch_add(&o.slots[bucket], weight, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o.count, weight, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o.sum_ns, ns * weight, __ATOMIC_RELAXED);
  }

 private:
  ExportMap() = default;
  comet_export* map_ = nullptr;
  size_t len_ = 0;
  env::FileId id_;
};

}  // namespace comet::internal
