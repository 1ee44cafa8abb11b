// Client: the data directory, its writer claim, the prefix registry, the shards and the
// background threads.
#include "comet/client.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "clock.h"
#include "control.h"
#include "env.h"
#include "membership.h"
#include "shard.h"

namespace comet {
namespace internal {

namespace {

constexpr const char* kLockFile = "comet.lock";
constexpr const char* kStreamsDir = "streams";
constexpr const char* kPrefixFile = "PREFIX";

bool ParseHex(const std::string& s, size_t width, uint32_t* out) {
  if (s.size() != width) return false;
  uint32_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

std::string Hex8(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08" PRIX32, v);
  return b;
}

}  // namespace

// Byte ranges of DIR/comet.lock, each an OFD lock that the kernel releases when its holder dies.
constexpr off_t kModeByte = 0;      // single-mode writer: exclusive; multi-mode processes: shared
constexpr off_t kSetupByte = 1;     // held while a process creates/attaches the control region
constexpr off_t kRegistryByte = 2;  // held while a prefix is registered

Status LockByte(int fd, off_t byte, short type, bool wait, const std::string& path) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  while (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) != 0) {
    if (errno == EINTR && wait) continue;
    if (errno == EAGAIN || errno == EACCES) return Status::NotOwner("locked");
    return Status::FromErrno(errno, "lock " + path);
  }
  return Status::Ok();
}

// Every open client, for the fork handlers.
std::mutex g_clients_mu;
std::vector<ClientImpl*> g_clients;
std::atomic<uint64_t> g_fork_generation{0};
std::once_flag g_atfork_once;
void PrepareFork();
void ParentAfterFork();
void ChildAfterFork();

class ClientImpl {
 public:
  ClientImpl(std::string dir, const Config& cfg) {
    ctx_.cfg = cfg;
    ctx_.root = std::move(dir);
    ctx_.read_only = cfg.open.read_only;
    ctx_.maintainer = &maintainer_;
    ctx_.syncer = &syncer_;
    multi_ = !ctx_.read_only && cfg.concurrency.mode == ConcurrencyMode::kMulti;
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
  Status CheckOpen() {
    if (closed_.load(std::memory_order_acquire)) {
      return Status::Closed("client for " + ctx_.root + " is closed");
    }
    if (fork_generation_ != g_fork_generation.load(std::memory_order_acquire)) return AfterFork();
    return Status::Ok();
  }
  Status SyncAll();
  std::vector<std::shared_ptr<Shard>> AllShards();
  void Record(format::MetricOp op, uint64_t ns) { ctx_.Record(op, ns, 1); }

  // Fork handling (see the pthread_atfork handlers).
  void LockForFork();
  void UnlockAfterFork(bool child);

  ShardContext ctx_;
  std::vector<std::string> report_;
  std::atomic<bool> closed_{false};

 private:
  Status ClaimDirectory();
  Status LoadPrefixes();
  Result<uint32_t> RegisterPrefix(const std::string& prefix);
  Result<std::shared_ptr<Shard>> LoadShard(uint32_t prefix_id, const std::string& prefix,
                                           uint32_t shard);
  void StartThreads();
  void StopThreads();
  void MaintainerLoop();
  void SyncerLoop();
  // Multi-process mode: take the shards the live membership assigns to this process, release
  // the others. `wait_ns` > 0 waits that long for a live owner to release an assigned shard.
  void Rebalance(int64_t wait_ns);
  std::vector<uint32_t> RefreshLive();
  bool AssignedToMe(uint32_t shard, const std::vector<uint32_t>& live) const;
  bool TryTake(Shard* s, const std::vector<uint32_t>& live);
  void Release(Shard* s);
  Status AfterFork();

  bool multi_ = false;
  int lock_fd_ = -1;
  std::unique_ptr<shm::ControlRegion> control_;
  std::unique_ptr<shm::Membership> membership_;
  Wakeup maintainer_, syncer_;
  std::thread maintainer_thread_, syncer_thread_;
  std::atomic<bool> stop_{false};
  uint64_t fork_generation_ = 0;
  std::mutex fork_mu_;  // serialises the child's re-initialisation

  std::mutex live_mu_;
  std::vector<uint32_t> live_;  // live process slots, as of the last rebalance

  std::mutex registry_mu_;  // prefix registration and shard creation
  std::map<std::string, uint32_t> prefix_ids_;
  uint32_t next_prefix_id_ = 0;

  mutable std::shared_mutex streams_mu_;
  std::unordered_map<std::string, std::unique_ptr<Stream>> streams_;
};

// Takes the directory: a single-mode writer holds kModeByte exclusively (and writes its pid
// into the file for error messages); multi-mode processes hold it shared.
Status ClientImpl::ClaimDirectory() {
  std::string path = env::Join(ctx_.root, kLockFile);
  Result<int> fd = env::OpenFile(path, O_RDWR | O_CREAT);
  if (!fd.ok()) return fd.status();
  Status st = LockByte(*fd, kModeByte, multi_ ? F_RDLCK : F_WRLCK, false, path);
  if (!st.ok()) {
    std::string holder;
    Result<std::string> text = env::ReadFile(path);
    if (text.ok() && !text->empty()) holder = text->substr(0, text->find('\n'));
    env::Close(*fd);
    if (!st.IsNotOwner()) return st;
    if (multi_) {
      return Status::NotOwner("data directory " + ctx_.root + " is held by a single-mode writer" +
                              (holder.empty() ? "" : " (pid " + holder + ")") +
                              "; every process must open it with concurrency.mode=multi");
    }
    return Status::NotOwner("data directory " + ctx_.root + " is held by another writer" +
                            (holder.empty() ? "" : " (pid " + holder + ")") +
                            "; open it read-only (open.read_only=true) to read it, or use "
                            "concurrency.mode=multi in every process to share it");
  }
  lock_fd_ = *fd;
  if (!multi_) {
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(lock_fd_, 0) != 0 || pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
      return Status::FromErrno(errno, "write " + path);
    }
  }
  return Status::Ok();
}

Status ClientImpl::Open() {
  if (Status st = ctx_.cfg.Validate(); !st.ok()) return st;
  (void)NsPerTickQ32();  // calibrate the histogram clock now, not on the first append
  if (ctx_.read_only) {
    Result<bool> exists = env::Exists(ctx_.root);
    if (!exists.ok()) return exists.status();
    if (!*exists) return Status::NotFound("no data directory " + ctx_.root);
    // Is a writer live? Its OFD lock on comet.lock says so exactly.
    Result<int> fd = env::OpenFile(env::Join(ctx_.root, kLockFile), O_RDONLY);
    if (fd.ok()) {
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      fl.l_start = kModeByte;
      fl.l_len = 1;
      if (fcntl(*fd, F_OFD_GETLK, &fl) == 0) ctx_.writer_live = fl.l_type != F_UNLCK;
      env::Close(*fd);
    }
    Result<std::unique_ptr<shm::ControlRegion>> c = shm::ControlRegion::OpenReader(ctx_.root);
    if (c.ok()) {
      control_ = std::move(*c);
    } else if (c.status().code() == Code::kVersion) {
      return c.status();
    }
    ctx_.control = control_.get();
    fork_generation_ = g_fork_generation.load(std::memory_order_acquire);
    return LoadPrefixes();
  }

  if (Status st = env::MkdirAll(ctx_.root); !st.ok()) return st;
  if (Status st = ClaimDirectory(); !st.ok()) return st;
  const std::string lock_path = env::Join(ctx_.root, kLockFile);
  // Creating or rebuilding the control region, and joining, happen one process at a time.
  if (Status st = LockByte(lock_fd_, kSetupByte, F_WRLCK, true, lock_path); !st.ok()) return st;
  Status st = [&]() -> Status {
    std::string note;
    Result<std::unique_ptr<shm::ControlRegion>> c = shm::ControlRegion::OpenWriter(
        ctx_.root, ctx_.cfg.storage.max_streams, ctx_.cfg.concurrency.max_processes, &note);
    if (!c.ok()) return c.status();
    control_ = std::move(*c);
    if (!note.empty()) report_.push_back(note);
    ctx_.control = control_.get();
    Result<std::unique_ptr<shm::Membership>> m = shm::Membership::Join(ctx_.root, control_.get());
    if (!m.ok()) return m.status();
    membership_ = std::move(*m);
    ctx_.metrics.store(control_->metrics(membership_->slot()));
    return env::MkdirAll(env::Join(ctx_.root, kStreamsDir));
  }();
  (void)LockByte(lock_fd_, kSetupByte, F_UNLCK, false, lock_path);
  if (!st.ok()) return st;
  if (Status ls = LoadPrefixes(); !ls.ok()) return ls;
  if (multi_) {
    Rebalance(200'000'000);
  } else {
    for (auto& s : AllShards()) s->slot()->owner.store(membership_->owner_word());
    control_->process(membership_->slot())->owned_shards.store(AllShards().size());
  }
  fork_generation_ = g_fork_generation.load(std::memory_order_acquire);
  std::call_once(g_atfork_once, [] { pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork); });
  {
    std::lock_guard lk(g_clients_mu);
    g_clients.push_back(this);
  }
  StartThreads();
  return Status::Ok();
}

void ClientImpl::StartThreads() {
  stop_.store(false, std::memory_order_release);
  maintainer_thread_ = std::thread([this] { MaintainerLoop(); });
  if (ctx_.cfg.sync.mode == SyncMode::kInterval) {
    syncer_thread_ = std::thread([this] { SyncerLoop(); });
  }
}

void ClientImpl::StopThreads() {
  stop_.store(true, std::memory_order_release);
  maintainer_.Notify();
  syncer_.Notify();
  if (maintainer_thread_.joinable()) maintainer_thread_.join();
  if (syncer_thread_.joinable()) syncer_thread_.join();
}

// Reads DIR/streams/<id>/PREFIX for every prefix and loads every shard not yet known. Run at
// open, and again in multi-process mode when other processes create streams.
Status ClientImpl::LoadPrefixes() {
  std::string streams = env::Join(ctx_.root, kStreamsDir);
  Result<std::vector<std::string>> ids = env::ListDir(streams);
  if (!ids.ok()) return ids.status().IsNotFound() ? Status::Ok() : ids.status();
  std::sort(ids->begin(), ids->end());
  for (const std::string& id_text : *ids) {
    uint32_t id;
    if (!ParseHex(id_text, 8, &id)) continue;
    next_prefix_id_ = std::max(next_prefix_id_, id + 1);
    std::string pdir = env::Join(streams, id_text);
    Result<std::vector<std::string>> shard_dirs = env::ListDir(pdir);
    if (!shard_dirs.ok()) return shard_dirs.status();
    std::sort(shard_dirs->begin(), shard_dirs->end());
    // The prefix's name: its PREFIX file, or any segment header if that file is lost.
    std::string prefix;
    Result<std::string> text = env::ReadFile(env::Join(pdir, kPrefixFile));
    if (text.ok() && ValidatePrefix(*text).ok()) prefix = *text;
    if (prefix.empty()) {
      for (const std::string& sd : *shard_dirs) {
        Result<std::vector<std::string>> files = env::ListDir(env::Join(pdir, sd));
        if (!files.ok()) continue;
        for (const std::string& f : *files) {
          if (!f.ends_with(".seg")) continue;
          Result<std::string> bytes = env::ReadFile(env::Join(pdir, sd + "/" + f));
          SegmentHeader h;
          if (bytes.ok() && DecodeSegmentHeader(bytes->data(), bytes->size(), f, &h).ok()) {
            prefix = h.prefix;
            break;
          }
        }
        if (!prefix.empty()) break;
      }
      if (prefix.empty()) continue;  // nothing stored under this id
      report_.push_back("streams/" + id_text + "/PREFIX missing or damaged; prefix '" + prefix +
                        "' recovered from a segment header");
      if (!ctx_.read_only) {
        Status st = env::WriteFile(env::Join(pdir, kPrefixFile), prefix.data(), prefix.size(), true);
        if (!st.ok()) return st;
      }
    }
    prefix_ids_[prefix] = id;
    for (const std::string& sd : *shard_dirs) {
      uint32_t shard;
      if (!ParseHex(sd, 4, &shard)) continue;
      {
        std::shared_lock lk(streams_mu_);
        if (streams_.count(ShardStreamName(prefix, shard))) continue;
      }
      Result<std::shared_ptr<Shard>> s = LoadShard(id, prefix, shard);
      if (!s.ok()) return s.status();
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<Shard>> ClientImpl::LoadShard(uint32_t prefix_id, const std::string& prefix,
                                                     uint32_t shard) {
  auto s = std::make_shared<Shard>(&ctx_, prefix_id, prefix, shard);
  // In multi-process mode every shard starts as a follower; Rebalance takes the assigned ones.
  if (Status st = s->Load(&report_, !ctx_.read_only && !multi_); !st.ok()) return st;
  std::unique_ptr<Stream> handle(new Stream(s));
  std::unique_lock lk(streams_mu_);
  streams_[s->name()] = std::move(handle);
  return s;
}

// Gives a new prefix the next id: a temporary directory holding its PREFIX file is renamed into
// place, so a crash never leaves an id without its name. Processes take turns (kRegistryByte),
// and re-read the registry first, so one prefix never gets two ids.
Result<uint32_t> ClientImpl::RegisterPrefix(const std::string& prefix) {
  auto it = prefix_ids_.find(prefix);
  if (it != prefix_ids_.end()) return it->second;
  const std::string lock_path = env::Join(ctx_.root, kLockFile);
  if (Status st = LockByte(lock_fd_, kRegistryByte, F_WRLCK, true, lock_path); !st.ok()) return st;
  Result<uint32_t> r = [&]() -> Result<uint32_t> {
    std::string streams = env::Join(ctx_.root, kStreamsDir);
    Result<std::vector<std::string>> names = env::ListDir(streams);
    if (!names.ok()) return names.status();
    for (const std::string& n : *names) {
      uint32_t id;
      if (ParseHex(n, 8, &id)) {
        next_prefix_id_ = std::max(next_prefix_id_, id + 1);
        Result<std::string> text = env::ReadFile(env::Join(streams, n + "/" + kPrefixFile));
        if (text.ok() && *text == prefix) return id;  // another process registered it
      } else if (n.starts_with(".new-")) {
        // Left by a registration that died mid-way (we hold the registry lock).
        std::string p = env::Join(streams, n);
        (void)env::Unlink(env::Join(p, kPrefixFile));
        rmdir(p.c_str());
      }
    }
    std::string tmp = env::Join(streams, ".new-" + std::to_string(getpid()));
    if (Status st = env::MkdirAll(tmp); !st.ok()) return st;
    Status st = env::WriteFile(env::Join(tmp, kPrefixFile), prefix.data(), prefix.size(), true);
    if (!st.ok()) return st;
    for (;;) {
      uint32_t id = next_prefix_id_++;
      std::string final_dir = env::Join(streams, Hex8(id));
      if (rename(tmp.c_str(), final_dir.c_str()) == 0) {
        if (Status s2 = env::FsyncDir(streams); !s2.ok()) return s2;
        return id;
      }
      if (errno != EEXIST && errno != ENOTEMPTY) {
        return Status::FromErrno(errno, "rename " + tmp + " -> " + final_dir);
      }
    }
  }();
  (void)LockByte(lock_fd_, kRegistryByte, F_UNLCK, false, lock_path);
  if (r.ok()) prefix_ids_[prefix] = *r;
  return r;
}

Result<Stream*> ClientImpl::FindStream(std::string_view name) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  {
    std::shared_lock lk(streams_mu_);
    auto it = streams_.find(std::string(name));
    if (it != streams_.end()) return it->second.get();
  }
  Result<StreamName> parsed = ParseStreamName(name);
  if (!parsed.ok()) return parsed.status();
  if (multi_) {
    // Perhaps another process created it.
    std::lock_guard lk(registry_mu_);
    if (Status st = LoadPrefixes(); !st.ok()) return st;
    std::shared_lock sl(streams_mu_);
    auto it = streams_.find(std::string(name));
    if (it != streams_.end()) return it->second.get();
  }
  return Status::NotFound("no stream " + std::string(name) + " in " + ctx_.root);
}

Result<Stream*> ClientImpl::GetStream(std::string_view name) {
  Result<Stream*> found = FindStream(name);
  if (found.ok() || !found.status().IsNotFound() || ctx_.read_only) return found;
  Result<StreamName> parsed = ParseStreamName(name);
  if (!parsed.ok()) return parsed.status();
  std::shared_ptr<Shard> shard;
  {
    std::lock_guard lk(registry_mu_);
    {
      std::shared_lock sl(streams_mu_);
      auto it = streams_.find(std::string(name));
      if (it != streams_.end()) return it->second.get();
    }
    Result<uint32_t> id = RegisterPrefix(parsed->prefix);
    if (!id.ok()) return id.status();
    Result<std::shared_ptr<Shard>> s = LoadShard(*id, parsed->prefix, parsed->shard);
    if (!s.ok()) return s.status();
    shard = *s;
  }
  if (multi_) {
    std::vector<uint32_t> live = RefreshLive();
    if (AssignedToMe(shard->shard(), live) && TryTake(shard.get(), live)) {
      control_->process(membership_->slot())->owned_shards.fetch_add(1);
    }
  } else {
    shard->slot()->owner.store(membership_->owner_word());
    control_->process(membership_->slot())->owned_shards.fetch_add(1);
  }
  std::shared_lock sl(streams_mu_);
  return streams_.at(std::string(name)).get();
}

std::vector<std::shared_ptr<Shard>> ClientImpl::AllShards() {
  std::vector<std::shared_ptr<Shard>> out;
  std::shared_lock lk(streams_mu_);
  for (auto& [n, s] : streams_) out.push_back(s->shard_);
  return out;
}

std::vector<std::string> ClientImpl::StreamNames() {
  std::vector<std::shared_ptr<Shard>> shards = AllShards();
  std::sort(shards.begin(), shards.end(), [](const auto& a, const auto& b) {
    return a->prefix() != b->prefix() ? a->prefix() < b->prefix() : a->shard() < b->shard();
  });
  std::vector<std::string> names;
  for (auto& s : shards) names.push_back(s->name());
  return names;
}

Status ClientImpl::SyncAll() {
  Status first;
  for (auto& s : AllShards()) {
    Status st = s->SyncAll();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

// ---- multi-process ownership -----------------------------------------------------------------

std::vector<uint32_t> ClientImpl::RefreshLive() {
  std::vector<uint32_t> live = membership_->LiveSlots();
  std::lock_guard lk(live_mu_);
  live_ = live;
  return live;
}

// Shard s belongs to the live process of rank s % live (ranks by slot number): the seed's
// shardID % processCount rule, over the processes actually alive.
bool ClientImpl::AssignedToMe(uint32_t shard, const std::vector<uint32_t>& live) const {
  if (live.empty()) return false;
  return live[shard % live.size()] == membership_->slot();
}

// Takes an assigned shard whose lease is free or held by a dead process (the kernel released
// its lock), then recovers what that process left behind. False if a live process holds it.
bool ClientImpl::TryTake(Shard* s, const std::vector<uint32_t>& live) {
  (void)live;
  if (s->is_writer()) return true;
  format::ShardSlot* slot = s->slot();
  const uint64_t mine = membership_->owner_word();
  uint64_t owner = slot->owner.load(std::memory_order_acquire);
  if (owner != 0 && owner != mine && membership_->IsLive(owner)) return false;
  if (owner != mine && !slot->owner.compare_exchange_strong(owner, mine)) return false;
  if (owner != 0 && owner != mine) control_->header()->takeovers.fetch_add(1);
  std::vector<std::string> problems;
  Status st = s->BecomeWriter(&problems);
  for (auto& p : problems) report_.push_back(p);
  if (!st.ok()) {
    uint64_t expected = mine;
    slot->owner.compare_exchange_strong(expected, 0);
    return false;
  }
  return true;
}

// Hands a shard back: appends stop, what was appended is published and synced per sync.mode,
// then the lease is cleared for the process it is assigned to.
void ClientImpl::Release(Shard* s) {
  if (!s->is_writer()) return;
  (void)s->BecomeFollower();
  uint64_t mine = membership_->owner_word();
  s->slot()->owner.compare_exchange_strong(mine, 0);
}

void ClientImpl::Rebalance(int64_t wait_ns) {
  {
    // Streams other processes created since we last looked.
    std::lock_guard lk(registry_mu_);
    if (control_->shard_count() != AllShards().size()) (void)LoadPrefixes();
  }
  const int64_t deadline = env::MonotonicNs() + wait_ns;
  for (;;) {
    std::vector<uint32_t> live = RefreshLive();
    bool missing = false;
    uint64_t owned = 0;
    for (auto& s : AllShards()) {
      if (AssignedToMe(s->shard(), live)) {
        if (!TryTake(s.get(), live)) missing = true;
      } else {
        Release(s.get());
      }
      owned += s->is_writer() ? 1 : 0;
    }
    control_->process(membership_->slot())->owned_shards.store(owned);
    if (!missing || env::MonotonicNs() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Result<std::string> ClientImpl::PickStream(std::string_view prefix, std::string_view key,
                                           uint32_t count) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  if (Status st = ValidatePrefix(prefix); !st.ok()) return st;
  if (count == 0) count = 16;
  if (count > kMaxShards) return Status::Invalid("shard count " + std::to_string(count) + " above 65536");
  if (!multi_) return ShardStreamName(prefix, PickShard(key.data(), key.size(), count));
  std::vector<uint32_t> live;
  {
    std::lock_guard lk(live_mu_);
    live = live_;
  }
  std::vector<uint32_t> mine;
  for (uint32_t s = 0; s < count; s++) {
    if (AssignedToMe(s, live)) mine.push_back(s);
  }
  if (mine.empty()) {
    return Status::NotOwner("this process owns none of the " + std::to_string(count) + " shards of " +
                            std::string(prefix) + " (" + std::to_string(live.size()) +
                            " live processes share them)");
  }
  return ShardStreamName(prefix, mine[PickShard(key.data(), key.size(),
                                                static_cast<uint32_t>(mine.size()))]);
}

// ---- background threads ----------------------------------------------------------------------

void ClientImpl::MaintainerLoop() {
  int64_t next_rebalance = 0;
  while (!stop_.load(std::memory_order_acquire)) {
    for (auto& s : AllShards()) s->Maintain();
    if (multi_ && env::MonotonicNs() >= next_rebalance) {
      Rebalance(0);
      next_rebalance = env::MonotonicNs() + 20'000'000;
    }
    maintainer_.Wait(multi_ ? 20'000'000 : 100'000'000);
  }
}

void ClientImpl::SyncerLoop() {
  const int64_t tick = std::min<int64_t>(static_cast<int64_t>(ctx_.cfg.sync.interval_ns),
                                         100'000'000);
  while (!stop_.load(std::memory_order_acquire)) {
    int64_t now = env::MonotonicNs();
    for (auto& s : AllShards()) s->MaybeIntervalSync(now);
    syncer_.Wait(tick);
  }
}

Status ClientImpl::Close() {
  if (closed_.exchange(true)) return Status::Ok();
  {
    std::lock_guard lk(g_clients_mu);
    g_clients.erase(std::remove(g_clients.begin(), g_clients.end(), this), g_clients.end());
  }
  if (!ctx_.read_only && fork_generation_ != g_fork_generation.load(std::memory_order_acquire)) {
    // A child closing a client it inherited and never used: the slot, the leases and the files
    // are the parent's. Only our copies of descriptors and mappings go away.
    return Status::Ok();
  }
  StopThreads();
  Status first;
  for (auto& s : AllShards()) {
    const bool was_writer = s->is_writer();
    Status st = s->Close();
    if (first.ok() && !st.ok()) first = st;
    if (was_writer && membership_) {
      uint64_t mine = membership_->owner_word();
      s->slot()->owner.compare_exchange_strong(mine, 0);
    }
  }
  if (membership_) membership_->Leave();
  if (lock_fd_ >= 0) {
    env::Close(lock_fd_);  // releases the directory claim
    lock_fd_ = -1;
  }
  return first;
}

// ---- fork ------------------------------------------------------------------------------------
//
// A client opened before fork() keeps working in the child: the handlers below take every lock
// of every client before the fork (so no lock is copied mid-critical-section), release them in
// the parent, and in the child release them and forget what the parent writes. The child's first
// call then joins as a process of its own (AfterFork). After fork(), a parent must not expect to
// keep writing the shards the membership now assigns to its children: they move to them.

void ClientImpl::LockForFork() {
  registry_mu_.lock();
  streams_mu_.lock();
  for (auto& [n, st] : streams_) st->shard_->LockForFork();
}

void ClientImpl::UnlockAfterFork(bool child) {
  for (auto& [n, st] : streams_) st->shard_->UnlockAfterFork(child);
  // glibc's rwlock remembers its writer's thread id, which differs in the child: a fresh lock
  // is the only correct way to release it there.
  if (child) {
    new (&streams_mu_) std::shared_mutex();
  } else {
    streams_mu_.unlock();
  }
  registry_mu_.unlock();
  if (child) {
    // The background threads did not come along: forget their handles without touching them.
    new (&maintainer_thread_) std::thread();
    new (&syncer_thread_) std::thread();
  }
}

Status ClientImpl::AfterFork() {
  std::lock_guard lk(fork_mu_);
  const uint64_t gen = g_fork_generation.load(std::memory_order_acquire);
  if (fork_generation_ == gen) return Status::Ok();
  fork_generation_ = gen;
  if (ctx_.read_only) return Status::Ok();  // readers hold nothing of the parent's
  // A single-mode writer's child has no claim of its own and must not write.
  if (!multi_) {
    closed_.store(true, std::memory_order_release);
    return Status::NotOwner("data directory " + ctx_.root +
                            " was opened by the parent in single-process mode; open it with "
                            "concurrency.mode=multi to keep writing after fork()");
  }
  // OFD locks belong to open file descriptions, which fork() shares with the parent: with the
  // inherited descriptors, siblings would not exclude each other. Open our own.
  env::Close(lock_fd_);
  lock_fd_ = -1;
  if (Status st = ClaimDirectory(); !st.ok()) return st;
  control_->ForgetLockAfterFork();
  if (Status st = membership_->RejoinAfterFork(); !st.ok()) return st;
  ctx_.metrics.store(control_->metrics(membership_->slot()));
  Rebalance(200'000'000);
  StartThreads();
  return Status::Ok();
}

void PrepareFork() {
  g_clients_mu.lock();
  for (ClientImpl* c : g_clients) c->LockForFork();
}

void ParentAfterFork() {
  for (ClientImpl* c : g_clients) c->UnlockAfterFork(false);
  g_clients_mu.unlock();
}

void ChildAfterFork() {
  for (ClientImpl* c : g_clients) c->UnlockAfterFork(true);
  g_fork_generation.fetch_add(1, std::memory_order_acq_rel);
  g_clients_mu.unlock();
}

Result<Iterator> ClientImpl::Scan(Stream* s, uint64_t from) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Iterator it;
  it.shard_ = s->shard_;
  it.next_ = from;
  it.offset_ = Segment::kBadOffset;
  return it;
}

}  // namespace internal

using internal::ClientImpl;

// ---- Entry, Iterator, Stream -----------------------------------------------------------------

Entry::Entry() = default;
Entry::~Entry() = default;
Entry::Entry(Entry&& o) noexcept { *this = std::move(o); }
Entry& Entry::operator=(Entry&& o) noexcept {
  if (this == &o) return *this;
  id = o.id;
  timestamp_ns = o.timestamp_ns;
  compressed = o.compressed;
  stored_size = o.stored_size;
  segment_ = std::move(o.segment_);
  const bool owned = o.compressed && o.data.data() == o.buffer_.data();
  buffer_ = std::move(o.buffer_);
  data = owned ? std::string_view(buffer_) : o.data;
  o.data = {};
  return *this;
}

Iterator::Iterator() = default;
Iterator::~Iterator() = default;
Iterator::Iterator(Iterator&&) noexcept = default;
Iterator& Iterator::operator=(Iterator&&) noexcept = default;

Status Iterator::Wait(int64_t timeout_ns) {
  if (!shard_) return Status::Invalid("iterator is not initialised (use Client::Scan)");
  return shard_->WaitFor(next_, timeout_ns);
}

Status Iterator::Next(Entry* out) {
  if (!shard_) return Status::Invalid("iterator is not initialised (use Client::Scan)");
  if (next_ >= committed_) {
    committed_ = shard_->Committed();
    if (next_ >= committed_) {
      return Status::NotFound(shard_->name() + ": no entry " + std::to_string(next_) + " yet");
    }
  }
  if (!segment_ || next_ < segment_->base() ||
      (segment_->sealed() && next_ >= segment_->base() + segment_->sealed_count())) {
    segment_.reset();
    uint64_t resume = next_;
    Status st = shard_->Locate(next_, &segment_, &resume);
    if (!st.ok()) {
      if (resume > next_) next_ = resume;  // skip the gap or the deleted prefix
      return st;
    }
    offset_ = internal::Segment::kBadOffset;
  }
  Status st = shard_->ReadAt(segment_, next_, &offset_, out);
  if (st.ok() || st.IsCorrupt()) next_++;
  return st;
}

Stream::Stream(std::shared_ptr<internal::Shard> s) : shard_(std::move(s)) {}
const std::string& Stream::name() const { return shard_->name(); }
uint32_t Stream::prefix_id() const { return shard_->prefix_id(); }
uint32_t Stream::shard() const { return shard_->shard(); }

// ---- Client ----------------------------------------------------------------------------------

Client::Client(std::unique_ptr<ClientImpl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Open(const std::string& dir, const Config& cfg) {
  if (dir.empty()) return Status::Invalid("data directory path is empty");
  auto impl = std::make_unique<ClientImpl>(dir, cfg);
  if (Status st = impl->Open(); !st.ok()) return st;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Status Client::Close() { return impl_->Close(); }

Result<Stream*> Client::GetStream(std::string_view name) { return impl_->GetStream(name); }

Status Client::Append(Stream* s, std::span<const std::string_view> entries, EntryId* ids_out) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  if (!s) return Status::Invalid("null stream handle");
  // Timing every call would cost a quarter of a single append (two TSC reads and three locked
  // adds on this class of machine): one call in kAppendSample is timed and counts for all.
  thread_local uint32_t calls = 0;
  if (++calls % internal::kAppendSample != 0) return s->shard_->Append(entries, ids_out);
  const uint64_t t0 = internal::Ticks();
  Status st = s->shard_->Append(entries, ids_out);
  impl_->ctx_.Record(format::kOpAppend, internal::TicksToNs(internal::Ticks() - t0),
                     internal::kAppendSample);
  return st;
}

Status Client::Append(std::string_view stream, std::span<const std::string_view> entries,
                      EntryId* ids_out) {
  Result<Stream*> s = impl_->GetStream(stream);
  if (!s.ok()) return s.status();
  return Append(*s, entries, ids_out);
}

Status Client::Sync() {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  return impl_->SyncAll();
}

Status Client::Read(Stream* s, uint64_t entry, Entry* out) {
  const uint64_t t0 = internal::Ticks();
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  if (!s) return Status::Invalid("null stream handle");
  Status st = s->shard_->Read(entry, out);
  impl_->Record(format::kOpRead, internal::TicksToNs(internal::Ticks() - t0));
  return st;
}

Status Client::Read(std::string_view stream, uint64_t entry, Entry* out) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  return Read(*s, entry, out);
}

Result<std::string> Client::PickStream(std::string_view prefix, std::string_view key,
                                       uint32_t shard_count) {
  return impl_->PickStream(prefix, key, shard_count);
}

Status Client::WaitFor(Stream* s, uint64_t entry, int64_t timeout_ns) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  if (!s) return Status::Invalid("null stream handle");
  return s->shard_->WaitFor(entry, timeout_ns);
}

Status Client::ReadRange(std::string_view stream, uint64_t from, size_t max,
                         std::vector<Entry>* out, uint64_t* corrupt) {
  Result<Iterator> it = Scan(stream, from);
  if (!it.ok()) return it.status();
  uint64_t bad = 0;
  while (out->size() < max) {
    Entry e;
    Status st = it->Next(&e);
    if (st.ok()) {
      out->push_back(std::move(e));
    } else if (st.IsCorrupt()) {
      bad++;
    } else if (st.IsNotFound() && it->position() < (*it).shard_->Committed()) {
      continue;  // a gap: the iterator moved past it
    } else if (st.IsNotFound()) {
      break;
    } else {
      return st;
    }
  }
  if (corrupt) *corrupt = bad;
  return Status::Ok();
}

Result<Iterator> Client::Scan(Stream* s, uint64_t from) {
  if (!s) return Status::Invalid("null stream handle");
  return impl_->Scan(s, from);
}

Result<Iterator> Client::Scan(std::string_view stream, uint64_t from) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  return impl_->Scan(*s, from);
}

Result<uint64_t> Client::Length(std::string_view stream) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) {
    if (s.status().IsNotFound()) return uint64_t{0};
    return s.status();
  }
  return (*s)->shard_->Committed();
}

std::vector<std::string> Client::Streams() { return impl_->StreamNames(); }

Result<StreamInfo> Client::Inspect(std::string_view stream) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  StreamInfo info;
  if (Status st = (*s)->shard_->Inspect(&info); !st.ok()) return st;
  return info;
}

Result<uint64_t> Client::Verify(std::vector<std::string>* problems) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  uint64_t bad = 0;
  for (auto& s : impl_->AllShards()) bad += s->Verify(problems);
  return bad;
}

Stats Client::GetStats() {
  Stats st;
  for (auto& s : impl_->AllShards()) s->AddStats(&st);
  if (impl_->ctx_.control) {
    st.gaps = impl_->ctx_.control->header()->gaps.load(std::memory_order_relaxed);
  }
  return st;
}

const std::vector<std::string>& Client::RecoveryReport() const { return impl_->report_; }
const std::string& Client::dir() const { return impl_->ctx_.root; }
const Config& Client::config() const { return impl_->ctx_.cfg; }

}  // namespace comet
