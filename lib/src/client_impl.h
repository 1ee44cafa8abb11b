// ClientImpl: what a Client is made of. Its pieces live in directory.cc (claiming and loading a
// data directory, streams, background threads), ownership.cc (multi-process shard ownership and
// fork) and client.cc (the public API).
#pragma once

#include <fcntl.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "comet/client.h"
#include "control.h"
#include "groups.h"
#include "membership.h"
#include "hot.h"
#include "shard.h"

namespace comet::internal {

inline constexpr const char* kLockFile = "comet.lock";
inline constexpr const char* kStreamsDir = "streams";
inline constexpr const char* kPrefixFile = "PREFIX";

// Byte ranges of DIR/comet.lock, each an OFD lock that the kernel releases when its holder dies.
inline constexpr off_t kModeByte = 0;      // single-mode writer: exclusive; multi-mode processes: shared
inline constexpr off_t kSetupByte = 1;     // held while a process creates/attaches the control region
inline constexpr off_t kRegistryByte = 2;  // held while a prefix is registered
inline constexpr off_t kRetentionByte = 3;  // held while a retention pass runs

class ClientImpl;
// Every open client, for the fork handlers (ownership.cc).
extern std::mutex g_clients_mu;
extern std::vector<ClientImpl*> g_clients;
extern std::atomic<uint64_t> g_fork_generation;
void InstallForkHandlers();

class ClientImpl {
 public:
  ClientImpl(std::string dir, const Config& cfg) : ctx_(std::make_shared<ShardContext>()) {
    ctx_->cfg = cfg;
    ctx_->root = std::move(dir);
    ctx_->read_only = cfg.open.read_only;
    ctx_->maintainer = &maintainer_;
    ctx_->syncer = &syncer_;
    multi_ = !ctx_->read_only && cfg.concurrency.mode == ConcurrencyMode::kMulti;
  }
  ~ClientImpl() { (void)Close(); }

  Status Open();
  Status Close();
  Result<Stream*> GetStream(std::string_view name);
  Result<Stream*> FindStream(std::string_view name);
  Result<Iterator> Scan(Stream* s, uint64_t from);
  Result<std::string> PickStream(std::string_view prefix, std::string_view key, uint32_t count);
  std::vector<std::string> StreamNames();
  // Every public call starts here: closed clients fail, and a client inherited through fork()
  // becomes its own process's member first.
  COMET_HOT Status CheckOpen() {
    if (ctx_->closed.load(std::memory_order_acquire)) {
      return Status::Closed("client for " + ctx_->root + " is closed");
    }
    if (fork_generation_ != g_fork_generation.load(std::memory_order_acquire)) return AfterFork();
    return Status::Ok();
  }
  Status SyncAll();
  // A retention pass over the directory, one process (and thread) at a time: `wait` for a pass
  // running elsewhere to finish, or return at once (ran = false).
  Result<RetentionReport> RunRetention(bool wait);
  std::vector<std::shared_ptr<Shard>> AllShards();
  // Loads the streams other processes or clients created since, found through the control
  // region's shard table (multi-process mode and read-only clients; a no-op for a single-mode
  // writer, which creates every stream itself).
  Status Discover();
  // Consumer-group offsets (null for a read-only client).
  const std::shared_ptr<GroupStore>& groups() const { return groups_; }
  void Record(format::MetricOp op, uint64_t ns) { ctx_->Record(op, ns, 1); }

  // Fork handling (see the pthread_atfork handlers).
  void LockForFork();
  void UnlockAfterFork(bool child);

  // Problems found while loading and taking over shards (RecoveryReport).
  void AddToReport(const std::vector<std::string>& lines) {
    std::lock_guard lk(report_mu_);
    report_.insert(report_.end(), lines.begin(), lines.end());
  }
  std::vector<std::string> Report() const {
    std::lock_guard lk(report_mu_);
    return report_;
  }

  // Shared with every shard (see ShardContext); ctx_->closed says whether Close ran.
  const std::shared_ptr<ShardContext> ctx_;

 private:
  Status ClaimDirectory();
  bool WriterLive() const;
  Status LoadPrefixes();
  void RemoveCrashLeftovers();
  Result<uint32_t> RegisterPrefix(const std::string& prefix);
  Result<std::shared_ptr<Shard>> LoadShard(uint32_t prefix_id, const std::string& prefix,
                                           uint32_t shard);
  void StartThreads();
  // Maps the pinned export map if it (re)appeared, forgets it if its pin went (bpf_export.h).
  void RefreshExport();
  void StopThreads();
  void MaintainerLoop();
  // Background retention: a pass when retention.interval has passed since the directory's last.
  void MaybeRetention();
  bool RetentionDue() const;
  void SyncerLoop();
  // Multi-process mode: take the shards the live membership assigns to this process, release
  // the others. `wait_ns` > 0 waits that long for a live owner to release an assigned shard.
  void Rebalance(int64_t wait_ns);
  std::vector<uint32_t> RefreshLive();
  bool AssignedToMe(uint32_t shard, const std::vector<uint32_t>& live) const;
  bool TryTake(Shard* s);
  void Release(Shard* s);
  Status AfterFork();

  mutable std::mutex report_mu_;
  std::vector<std::string> report_;
  bool multi_ = false;
  int lock_fd_ = -1;
  std::shared_ptr<shm::ControlRegion> control_;  // also ctx_->control_owner
  std::shared_ptr<GroupStore> groups_;
  int64_t groups_flushed_mono_ = 0;  // syncer thread: last interval write of the group files
  std::unique_ptr<shm::Membership> membership_;
  static constexpr size_t kMaxExportMaps = 8;  // see RefreshExport
  Wakeup maintainer_, syncer_;
  std::thread maintainer_thread_, syncer_thread_;
  std::atomic<bool> stop_{false};
  uint64_t fork_generation_ = 0;
  std::mutex fork_mu_;  // serialises the child's re-initialisation

  std::mutex live_mu_;
  std::vector<uint32_t> live_;  // live process slots, as of the last rebalance

  std::mutex retention_mu_;  // one pass at a time in this process (the OFD lock is per fd)

  std::mutex registry_mu_;  // prefix registration and shard creation
  std::map<std::string, uint32_t> prefix_ids_;
  uint32_t next_prefix_id_ = 0;

  mutable std::shared_mutex streams_mu_;
  // Looked up by a string_view as it is (no string built per append by name).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::unique_ptr<Stream>, NameHash, std::equal_to<>> streams_;
};

}  // namespace comet::internal
