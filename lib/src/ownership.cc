// ClientImpl, the multi-process side: which live process writes which shard, handing shards
// over, routing keys to owned shards, and surviving fork().
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "client_impl.h"
#include "env.h"
#include "probes.h"

namespace comet::internal {

std::mutex g_clients_mu;
std::vector<ClientImpl*> g_clients;
std::atomic<uint64_t> g_fork_generation{0};

namespace {
void PrepareFork();
void ParentAfterFork();
void ChildAfterFork();
}  // namespace

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
bool ClientImpl::TryTake(Shard* s) {
  if (s->is_writer()) return true;
  format::ShardSlot* slot = s->slot();
  const uint64_t mine = membership_->owner_word();
  uint64_t owner = slot->owner.load(std::memory_order_acquire);
  if (owner != 0 && owner != mine && membership_->IsLive(owner)) return false;
  if (owner != mine && !slot->owner.compare_exchange_strong(owner, mine)) return false;
  if (owner != 0 && owner != mine) control_->header()->takeovers.fetch_add(1);
  std::vector<std::string> problems;
  COMET_PROBE(takeover_start, s->prefix_id(), s->shard(), 0, 0);
  Status st = s->BecomeWriter(&problems);
  COMET_PROBE(takeover_done, s->prefix_id(), s->shard(), s->Committed(), 0, st.raw());
  AddToReport(problems);
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
  COMET_PROBE(rebalance_start, kProbeAll, kProbeAll, 0, 0);
  for (;;) {
    std::vector<uint32_t> live = RefreshLive();
    bool missing = false;
    uint64_t owned = 0;
    for (auto& s : AllShards()) {
      if (AssignedToMe(s->shard(), live)) {
        if (!TryTake(s.get())) missing = true;
      } else {
        Release(s.get());
      }
      owned += s->is_writer() ? 1 : 0;
    }
    control_->process(membership_->slot())->owned_shards.store(owned);
    if (!missing || env::MonotonicNs() >= deadline) {
      COMET_PROBE(rebalance_done, kProbeAll, kProbeAll, owned, 0, missing ? static_cast<int>(Code::kTimeout) : 0);
      return;
    }
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
  // This process's shards are rank, rank + n, rank + 2n, ... (see AssignedToMe).
  auto me = std::find(live.begin(), live.end(), membership_->slot());
  const uint32_t n = static_cast<uint32_t>(live.size());
  const uint32_t rank = static_cast<uint32_t>(me - live.begin());
  if (me == live.end() || rank >= count) {
    return Status::NotOwner("this process owns none of the " + std::to_string(count) +
                            " shards of " + std::string(prefix) + " (" + std::to_string(n) +
                            " live processes share them)");
  }
  const uint32_t mine = (count - rank + n - 1) / n;
  return ShardStreamName(prefix, rank + n * PickShard(key.data(), key.size(), mine));
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
    // A pass the maintainer ran at the fork did not come along; its mutex must not stay held.
    new (&retention_mu_) std::mutex();
    new (&streams_mu_) std::shared_mutex();
    if (membership_) membership_->ForgetLocksAfterFork();
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
  if (ctx_->read_only) return Status::Ok();  // readers hold nothing of the parent's
  // A single-mode writer's child has no claim of its own and must not write.
  if (!multi_) {
    ctx_->closed.store(true, std::memory_order_release);
    return Status::NotOwner("data directory " + ctx_->root +
                            " was opened by the parent in single-process mode; open it with "
                            "concurrency.mode=multi to keep writing after fork()");
  }
  // OFD locks belong to open file descriptions, which fork() shares with the parent: with the
  // inherited descriptors, siblings would not exclude each other. Open our own.
  env::Close(lock_fd_);
  lock_fd_ = -1;
  if (Status st = ClaimDirectory(); !st.ok()) return st;
  control_->ForgetLockAfterFork();
  groups_->ForgetLockAfterFork();
  if (Status st = membership_->RejoinAfterFork(); !st.ok()) return st;
  ctx_->metrics.store(control_->metrics(membership_->slot()));
  Rebalance(200'000'000);
  StartThreads();
  return Status::Ok();
}

namespace {

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

}  // namespace

void InstallForkHandlers() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork); });
}

}  // namespace comet::internal
