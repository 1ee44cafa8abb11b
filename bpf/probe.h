// The user-space side of `comet probe`: loads the BPF programs of comet.bpf.c (through the
// skeleton), pins their result maps, attaches them to the library's USDT probes and to the
// kernel's tracepoints, reads the maps back, and undoes all of it on destruction. The loader
// runs open -> configure -> load -> attach, and one destructor undoes what was done.
//
// Thread safety: a Probe is used by one thread.
#pragma once

extern "C" {
#include <linux/types.h>
}

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comet/status.h"
#include "comet/bpf_abi.h"

namespace comet::bpf {

struct ProbeOptions {
  // Where the maps are pinned; created (on a BPF filesystem) if missing.
  std::string pin_dir = COMET_PIN_DEFAULT;
  // Files whose USDT probes to attach to: libcomet.so, or an executable linking the library
  // statically. Empty: every libcomet.so beside this tool or mapped by a running process (or,
  // with pid, the ones that process maps, and its executable).
  std::vector<std::string> targets;
  int pid = 0;            // only this process (0: every process)
  std::string cgroup;     // only tasks in this cgroup v2 directory (empty: no filter)
  bool keep = false;      // leave the maps pinned on destruction
  bool attach = true;     // false: create and pin the maps only (for the export map)
};

// What the pinned maps hold (a copy).
struct Snapshot {
  comet_hist ops[COMET_OP_COUNT] = {};
  comet_hist kernel[COMET_K_COUNT] = {};
  std::vector<std::pair<comet_shard_key, comet_hist>> shards;  // sorted by key
  std::vector<std::pair<uint32_t, comet_faults>> faults;       // by process id, sorted
};

class Probe {
 public:
  // Checks privileges and the pin directory, loads and attaches. The error says what to do:
  // run as root, mount bpffs, name a target with probes, or why the kernel refused the
  // programs. `notes` receives what the caller should tell the user (targets, replaced pins,
  // kernel-side programs that could not attach).
  static Result<std::unique_ptr<Probe>> Start(const ProbeOptions& opts,
                                              std::vector<std::string>* notes);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  Status Read(Snapshot* out) const;
  const std::vector<std::string>& targets() const { return targets_; }
  size_t attached_probes() const { return usdt_links_; }
  const std::string& pin_dir() const { return opts_.pin_dir; }

 private:
  struct Skeleton;
  explicit Probe(ProbeOptions opts);
  Status PreparePinDir(std::vector<std::string>* notes);
  Status ReplaceStalePins(std::vector<std::string>* notes);
  Status Load(std::vector<std::string>* notes);
  Status InitExport();
  void AttachKernelSide(std::vector<std::string>* notes);
  Status AttachUsdt(std::vector<std::string>* notes);
  void Unpin();

  ProbeOptions opts_;
  std::unique_ptr<Skeleton> skel_;
  std::vector<std::string> targets_;
  size_t usdt_links_ = 0;
  int pin_lock_fd_ = -1;
  std::vector<std::string> created_dirs_;  // pin directories this run created, deepest first
};

// True if the ELF file at path carries the library's USDT probes.
bool HasCometProbes(const std::string& path);

// Names of the operations, indexed by comet_op / comet_kernel_op ("append", "msync", ...).
const char* OpName(uint32_t op);
const char* KernelOpName(uint32_t op);

}  // namespace comet::bpf
