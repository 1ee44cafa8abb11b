// ClientImpl, the directory side: claiming it, the control region and membership, the prefix
// registry, streams, background threads, and closing.
#include <pthread.h>
#include <signal.h>

#include <algorithm>

#include "client_impl.h"
#include "clock.h"
#include "env.h"
#include "retention.h"
#include "test_hooks.h"
#include "text.h"

namespace comet::internal {

namespace {

bool ParseHex(const std::string& s, size_t width, uint32_t* out) {
  uint64_t v;
  if (!text::ParseUpperHex(s, width, &v)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

// Removes the temporary directory of a prefix registration that did not finish.
void RemoveRegistration(const std::string& tmp_dir) {
  (void)env::Unlink(env::Join(tmp_dir, kPrefixFile));
  (void)env::Unlink(env::Join(tmp_dir, std::string(kPrefixFile) + ".tmp"));
  (void)env::RemoveDir(tmp_dir);
}

// Takes, or releases, the OFD lock on one byte of comet.lock. NOT_OWNER when a non-waiting
// request conflicts.
Status LockByte(int fd, uint64_t byte, env::LockType type, bool wait, const std::string& path) {
  return env::OfdLock(fd, type, byte, 1, wait, path);
}

constexpr env::LockType kShared = env::LockType::kShared;
constexpr env::LockType kExclusive = env::LockType::kExclusive;
constexpr env::LockType kUnlock = env::LockType::kUnlock;

}  // namespace

// Takes the directory: a single-mode writer holds kModeByte exclusively (and writes its pid
// into the file for error messages); multi-mode processes hold it shared.
Status ClientImpl::ClaimDirectory() {
  std::string path = env::Join(ctx_->root, kLockFile);
  Result<int> fd = env::OpenFile(path, O_RDWR | O_CREAT);
  if (!fd.ok()) return fd.status();
  Status st = LockByte(*fd, kModeByte, multi_ ? kShared : kExclusive, false, path);
  if (!st.ok()) {
    std::string holder;
    Result<std::string> text = env::ReadFile(path);
    if (text.ok() && !text->empty()) holder = text->substr(0, text->find('\n'));
    env::Close(*fd);
    if (!st.IsNotOwner()) return st;
    if (multi_) {
      return Status::NotOwner("data directory " + ctx_->root + " is held by a single-mode writer" +
                              (holder.empty() ? "" : " (pid " + holder + ")") +
                              "; every process must open it with concurrency.mode=multi");
    }
    return Status::NotOwner("data directory " + ctx_->root + " is held by another writer" +
                            (holder.empty() ? "" : " (pid " + holder + ")") +
                            "; open it read-only (open.read_only=true) to read it, or use "
                            "concurrency.mode=multi in every process to share it");
  }
  lock_fd_ = *fd;
  if (!multi_) {
    std::string pid = std::to_string(env::ProcessId()) + "\n";
    if (Status st = env::Truncate(lock_fd_, 0, path); !st.ok()) return st;
    if (Status st = env::PwriteFull(lock_fd_, pid.data(), pid.size(), 0, path); !st.ok()) return st;
  }
  return Status::Ok();
}

// Whether a writer holds the directory (single mode) or a process is a member (multi mode):
// their OFD lock on comet.lock says so exactly.
bool ClientImpl::WriterLive() const {
  return env::OfdLockHeldAt(env::Join(ctx_->root, kLockFile), kModeByte, 1);
}

Status ClientImpl::Open() {
  if (Status st = ctx_->cfg.Validate(); !st.ok()) return st;
  (void)NsPerTickQ32();  // calibrate the histogram clock now, not on the first append
  if (ctx_->read_only) {
    Result<bool> exists = env::Exists(ctx_->root);
    if (!exists.ok()) return exists.status();
    if (!*exists) return Status::NotFound("no data directory " + ctx_->root);
    ctx_->writer_live = WriterLive();
    Result<std::unique_ptr<shm::ControlRegion>> c = shm::ControlRegion::OpenReader(ctx_->root);
    if (c.ok()) {
      control_ = std::move(*c);
    } else if (c.status().code() == Code::kVersion) {
      return c.status();
    }
    ctx_->control_owner = control_;
    ctx_->control = control_.get();
    fork_generation_ = g_fork_generation.load(std::memory_order_acquire);
    return LoadPrefixes();
  }

  if (Status st = env::MkdirAll(ctx_->root); !st.ok()) return st;
  if (Status st = ClaimDirectory(); !st.ok()) return st;
  const std::string lock_path = env::Join(ctx_->root, kLockFile);
  // Creating or rebuilding the control region, and joining, happen one process at a time.
  if (Status st = LockByte(lock_fd_, kSetupByte, kExclusive, true, lock_path); !st.ok()) return st;
  Status st = [&]() -> Status {
    RemoveCrashLeftovers();
    std::string note;
    const Config& cfg = ctx_->cfg;
    shm::ControlLimits limits{cfg.storage.max_streams, cfg.concurrency.max_processes,
                              cfg.consumers.max_groups, cfg.consumers.max_offsets};
    Result<std::unique_ptr<shm::ControlRegion>> c =
        shm::ControlRegion::OpenWriter(ctx_->root, limits, &note);
    if (!c.ok()) return c.status();
    control_ = std::move(*c);
    if (!note.empty()) AddToReport({note});
    groups_ = std::make_shared<GroupStore>(ctx_->root, control_);
    std::vector<std::string> problems;
    Status gs = groups_->Load(&problems);
    AddToReport(problems);
    if (!gs.ok()) return gs;
    ctx_->control_owner = control_;
    ctx_->control = control_.get();
    Result<std::unique_ptr<shm::Membership>> m = shm::Membership::Join(ctx_->root, control_.get());
    if (!m.ok()) return m.status();
    membership_ = std::move(*m);
    ctx_->metrics.store(control_->metrics(membership_->slot()));
    return env::MkdirAll(env::Join(ctx_->root, kStreamsDir));
  }();
  (void)LockByte(lock_fd_, kSetupByte, kUnlock, false, lock_path);
  if (!st.ok()) return st;
  if (Status ls = LoadPrefixes(); !ls.ok()) return ls;
  if (multi_) {
    Rebalance(200'000'000);
  } else {
    for (auto& s : AllShards()) s->slot()->owner.store(membership_->owner_word());
    control_->process(membership_->slot())->owned_shards.store(AllShards().size());
  }
  fork_generation_ = g_fork_generation.load(std::memory_order_acquire);
  RefreshExport();
  InstallForkHandlers();
  {
    std::lock_guard lk(g_clients_mu);
    g_clients.push_back(this);
  }
  StartThreads();
  return Status::Ok();
}

// Temporary files of the directory itself that a crash can leave: the control file being built
// (its builder holds the setup lock, which the caller holds now) and, when this process is the
// only writer, prefix registrations cut short. Shard directories are cleaned by their writer.
void ClientImpl::RemoveCrashLeftovers() {
  (void)env::Unlink(env::Join(ctx_->root, std::string(shm::ControlRegion::kFileName) + ".tmp"));
  if (multi_) return;  // other members may be registering prefixes right now
  const std::string streams = env::Join(ctx_->root, kStreamsDir);
  Result<std::vector<std::string>> names = env::ListDir(streams);
  if (!names.ok()) return;
  for (const std::string& n : *names) {
    const std::string p = env::Join(streams, n);
    if (n.starts_with(".new-")) {
      RemoveRegistration(p);
    } else {
      (void)env::Unlink(env::Join(p, std::string(kPrefixFile) + ".tmp"));
    }
  }
}

// The threads start with every signal blocked, so that the host's signals are handled by its
// own threads: a server that waits for them in sigsuspend (nginx's master) or reads them from a
// signalfd would otherwise see them taken by a background thread of the library.
void ClientImpl::StartThreads() {
  stop_.store(false, std::memory_order_release);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  maintainer_thread_ = std::thread([this] { MaintainerLoop(); });
  if (ctx_->cfg.sync.mode == SyncMode::kInterval) {
    syncer_thread_ = std::thread([this] { SyncerLoop(); });
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
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
  std::string streams = env::Join(ctx_->root, kStreamsDir);
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
      AddToReport({"streams/" + id_text + "/PREFIX missing or damaged; prefix '" + prefix +
                   "' recovered from a segment header"});
      if (!ctx_->read_only) {
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
  auto s = std::make_shared<Shard>(ctx_, prefix_id, prefix, shard);
  // In multi-process mode every shard starts as a follower; Rebalance takes the assigned ones.
  std::vector<std::string> problems;
  Status st = s->Load(&problems, !ctx_->read_only && !multi_);
  AddToReport(problems);
  if (!st.ok()) return st;
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
  const std::string lock_path = env::Join(ctx_->root, kLockFile);
  Status locked = LockByte(lock_fd_, kRegistryByte, kExclusive, true, lock_path);
  if (!locked.ok()) return locked;
  Result<uint32_t> r = [&]() -> Result<uint32_t> {
    std::string streams = env::Join(ctx_->root, kStreamsDir);
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
        RemoveRegistration(env::Join(streams, n));
      }
    }
    std::string tmp = env::Join(streams, ".new-" + std::to_string(env::ProcessId()));
    if (Status st = env::MkdirAll(tmp); !st.ok()) return st;
    Status st = env::WriteFile(env::Join(tmp, kPrefixFile), prefix.data(), prefix.size(), true);
    if (!st.ok()) return st;
    for (;;) {
      uint32_t id = next_prefix_id_++;
      std::string final_dir = env::Join(streams, text::UpperHex(id, 8));
      Result<bool> moved = env::RenameDirIfAbsent(tmp, final_dir);
      if (!moved.ok()) return moved.status();
      if (*moved) {
        if (Status s2 = env::FsyncDir(streams); !s2.ok()) return s2;
        return id;
      }
    }
  }();
  (void)LockByte(lock_fd_, kRegistryByte, kUnlock, false, lock_path);
  if (r.ok()) prefix_ids_[prefix] = *r;
  return r;
}

COMET_HOT Result<Stream*> ClientImpl::FindStream(std::string_view name) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  {
    std::shared_lock lk(streams_mu_);
    auto it = streams_.find(name);
    if (it != streams_.end()) return it->second.get();
  }
  Result<StreamName> parsed = ParseStreamName(name);
  if (!parsed.ok()) return parsed.status();
  // Perhaps another process (or client) created it since.
  if (Status st = Discover(); !st.ok()) return st;
  {
    std::shared_lock sl(streams_mu_);
    auto it = streams_.find(name);
    if (it != streams_.end()) return it->second.get();
  }
  return Status::NotFound("no stream " + std::string(name) + " in " + ctx_->root);
}

COMET_HOT Result<Stream*> ClientImpl::GetStream(std::string_view name) {
  Result<Stream*> found = FindStream(name);
  if (found.ok() || !found.status().IsNotFound() || ctx_->read_only) return found;
  Result<StreamName> parsed = ParseStreamName(name);
  if (!parsed.ok()) return parsed.status();
  std::shared_ptr<Shard> shard;
  {
    std::lock_guard lk(registry_mu_);
    {
      std::shared_lock sl(streams_mu_);
      auto it = streams_.find(name);
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
    if (AssignedToMe(shard->shard(), live) && TryTake(shard.get())) {
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

// Every stream takes its slot in the control region's shard table before its directory
// exists: while this client knows as many streams as the table holds, there is nothing new.
Status ClientImpl::Discover() {
  if (!multi_ && !ctx_->read_only) return Status::Ok();
  auto known = [&] {
    std::shared_lock lk(streams_mu_);
    return streams_.size();
  };
  if (control_ && control_->shard_count() <= known()) return Status::Ok();
  std::lock_guard lk(registry_mu_);
  // A read-only client loads a new stream as a writer's follower, or recovers it itself.
  if (ctx_->read_only) ctx_->writer_live = WriterLive();
  return LoadPrefixes();
}

std::vector<std::string> ClientImpl::StreamNames() {
  (void)Discover();
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

// ---- background threads ----------------------------------------------------------------------

void ClientImpl::MaintainerLoop() {
  int64_t next_rebalance = 0, next_export_check = env::MonotonicNs() + 1'000'000'000;
  while (!stop_.load(std::memory_order_acquire)) {
    bool more = false;  // a shard has pre-faulting left to do: come back without sleeping
    for (auto& s : AllShards()) {
      more = s->Maintain() || more;
      s->ForgetRetained();
    }
    MaybeRetention();
    // sync.mode=none: group files are written, never synced, on this thread's schedule.
    if (ctx_->cfg.sync.mode == SyncMode::kNone) (void)groups_->Flush(false);
    if (env::MonotonicNs() >= next_export_check) {
      RefreshExport();
      next_export_check = env::MonotonicNs() + 1'000'000'000;
    }
    if (multi_ && env::MonotonicNs() >= next_rebalance) {
      Rebalance(0);
      next_rebalance = env::MonotonicNs() + 20'000'000;
    }
    if (!more) maintainer_.Wait(multi_ ? 20'000'000 : 100'000'000);
  }
}

// Whether retention.interval has passed since the directory's last pass (by any process). A
// last pass in the future means the clock was set back: run rather than wait for it.
bool ClientImpl::RetentionDue() const {
  const Config& cfg = ctx_->cfg;
  if (!RetentionEnabled(cfg.retention) || cfg.retention.interval_ns == 0) return false;
  const int64_t last = control_->header()->retention_last_ns.load(std::memory_order_relaxed);
  const int64_t now = env::NowNs();
  return now < last || now - last >= static_cast<int64_t>(cfg.retention.interval_ns);
}

void ClientImpl::MaybeRetention() {
  if (!RetentionDue()) return;
  Result<RetentionReport> r = RunRetention(false);
  if (!r.ok()) AddToReport({"retention: " + r.status().message()});
}

Result<RetentionReport> ClientImpl::RunRetention(bool wait) {
  if (ctx_->read_only) return Status::Invalid("client is read-only; cannot run retention on " + ctx_->root);
  std::unique_lock lk(retention_mu_, std::defer_lock);
  if (wait) {
    lk.lock();
  } else if (!lk.try_lock()) {
    return RetentionReport{};
  }
  const std::string lock_path = env::Join(ctx_->root, kLockFile);
  Status locked = LockByte(lock_fd_, kRetentionByte, kExclusive, wait, lock_path);
  if (locked.IsNotOwner() && !wait) return RetentionReport{};
  if (!locked.ok()) return locked;
  if (!wait && !RetentionDue()) {  // another process's pass ended while we looked
    (void)LockByte(lock_fd_, kRetentionByte, kUnlock, false, lock_path);
    return RetentionReport{};
  }
  Result<RetentionReport> r = RunRetentionPass(ctx_->root, ctx_->cfg, control_.get(), RetentionNowNs());
  (void)LockByte(lock_fd_, kRetentionByte, kUnlock, false, lock_path);
  for (auto& s : AllShards()) s->ForgetRetained();
  return r;
}

void ClientImpl::RefreshExport() {
  const std::string& dir = ctx_->cfg.metrics.bpf_pin_dir;
  if (dir.empty() || ctx_->read_only) return;
  auto& maps = ctx_->export_maps;
  ExportMap* current = maps.empty() ? nullptr : maps.back().get();
  if (current && current->StillPinned(dir)) {
    ctx_->exported.store(current->get(), std::memory_order_relaxed);
    return;
  }
  ctx_->exported.store(nullptr, std::memory_order_relaxed);
  if (maps.size() >= kMaxExportMaps) return;  // re-pinned over and over: stop following
  if (std::unique_ptr<ExportMap> m = ExportMap::Open(dir)) {
    ctx_->exported.store(m->get(), std::memory_order_relaxed);
    maps.push_back(std::move(m));
  }
}

void ClientImpl::SyncerLoop() {
  const int64_t tick = std::min<int64_t>(static_cast<int64_t>(ctx_->cfg.sync.interval_ns),
                                         100'000'000);
  while (!stop_.load(std::memory_order_acquire)) {
    int64_t now = env::MonotonicNs();
    for (auto& s : AllShards()) s->MaybeIntervalSync(now);
    if (now - groups_flushed_mono_ >= static_cast<int64_t>(ctx_->cfg.sync.interval_ns)) {
      (void)groups_->Flush(true);
      groups_flushed_mono_ = now;
    }
    syncer_.Wait(tick);
  }
}

Status ClientImpl::Close() {
  if (ctx_->closed.exchange(true)) return Status::Ok();
  {
    std::lock_guard lk(g_clients_mu);
    g_clients.erase(std::remove(g_clients.begin(), g_clients.end(), this), g_clients.end());
  }
  if (!ctx_->read_only && fork_generation_ != g_fork_generation.load(std::memory_order_acquire)) {
    // A child closing a client it inherited and never used: the slot, the leases and the files
    // are the parent's. Only our copies of descriptors and mappings go away.
    return Status::Ok();
  }
  StopThreads();
  Status first;
  if (groups_) first = groups_->Flush(ctx_->cfg.sync.mode != SyncMode::kNone);
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

Result<Iterator> ClientImpl::Scan(Stream* s, uint64_t from) {
  if (Status st = CheckOpen(); !st.ok()) return st;
  Iterator it;
  it.shard_ = s->shard_;
  it.next_ = from;
  it.offset_ = Segment::kBadOffset;
  return it;
}

}  // namespace comet::internal
