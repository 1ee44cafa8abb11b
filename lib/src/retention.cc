// The retention pass (retention.h): what is on disk, which groups protect what, and deleting
// shards' oldest segments until every limit holds.
#include "retention.h"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "comet/format.h"
#include "comet/stream.h"
#include "control.h"
#include "env.h"
#include "segment.h"
#include "shard.h"
#include "test_hooks.h"
#include "text.h"

namespace comet::internal {

namespace {

constexpr uint64_t kNoGroup = ~uint64_t{0};

// Test hooks (test_hooks.h).
std::atomic<int64_t> retention_now_ns{0};
std::atomic<void (*)(uint64_t)> delete_hook{nullptr};

// One segment file as the pass sees it.
struct SegFile {
  uint64_t base = 0;
  uint64_t bytes = 0;            // the file's size
  std::optional<int64_t> created_ns;  // from its header (unknown when the header is damaged)
};

struct GroupOffset {
  format::OffsetSlot* offset;
  format::GroupSlot* group;
};

// One shard's files. segs[front..] remain; segs[..front] were deleted by this pass.
struct ShardFiles {
  uint32_t prefix_id = 0, shard = 0;
  std::string name, dir, rel_dir;
  std::vector<SegFile> segs;      // by base
  std::vector<uint64_t> indexes;  // bases of index files
  size_t front = 0;
  uint64_t bytes = 0;             // of the remaining segment files
  format::ShardSlot* slot = nullptr;
  std::vector<GroupOffset> groups;
  bool changed = false;

  const SegFile& first() const { return segs[front]; }
  // One past the last entry of the first remaining segment: the next one's base.
  uint64_t FirstEnd() const { return segs[front + 1].base; }
  // The lowest committed offset among the groups that read this stream (kNoGroup if none).
  uint64_t Protect() const {
    uint64_t p = kNoGroup;
    for (const GroupOffset& g : groups) {
      p = std::min(p, g.offset->committed.load(std::memory_order_acquire));
    }
    return p;
  }
};

enum class Why { kEarlierPass, kAge, kForced, kShardBytes, kTotalBytes, kFreeDisk };

const char* Reason(Why w) {
  switch (w) {
    case Why::kEarlierPass: return "retained_from says an earlier pass deleted it";
    case Why::kAge: return "older than retention.max_age";
    case Why::kForced: return "older than retention.force_delete_after, not consumed by every group";
    case Why::kShardBytes: return "over retention.max_shard_bytes";
    case Why::kTotalBytes: return "over retention.max_total_bytes";
    case Why::kFreeDisk: return "free disk space below retention.min_free_bytes";
  }
  return "";
}

bool ParseHexName(std::string_view name, size_t width, uint64_t* out) {
  return name.size() == width && text::ParseUpperHex(name, width, out);
}

// "<base:016X>.<ext>" -> base.
bool ParseFileName(const std::string& name, const char* ext, uint64_t* base) {
  return name.size() == 17 + std::char_traits<char>::length(ext) && name[16] == '.' &&
         name.compare(17, std::string::npos, ext) == 0 &&
         text::ParseUpperHex(std::string_view(name).substr(0, 16), 16, base);
}

// NOT_FOUND when the file went meanwhile (its writer's recovery removed it).
Result<SegFile> ReadSegFile(const std::string& path, uint64_t base) {
  Result<int> fd = env::OpenFile(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  SegFile f;
  f.base = base;
  Result<uint64_t> size = env::FileSize(*fd, path);
  char header[format::kSegmentHeaderSize];
  size_t got = 0;
  Status st = size.ok() ? env::PreadFull(*fd, header, sizeof header, 0, path, &got) : size.status();
  env::Close(*fd);
  if (!st.ok()) return st;
  f.bytes = *size;
  SegmentHeader h;
  if (DecodeSegmentHeader(header, got, path, &h).ok() && h.base_entry == base) {
    f.created_ns = h.created_ns;
  }
  return f;
}

class Pass {
 public:
  Pass(const std::string& root, const Config& cfg, shm::ControlRegion* control, int64_t now)
      : root_(root), r_(cfg.retention), control_(control), now_(now) {}

  Result<RetentionReport> Run() {
    if (Status st = Scan(); !st.ok()) return st;
    AttachGroups();
    for (ShardFiles& sh : shards_) {
      if (Status st = PerShard(&sh); !st.ok()) return Finish(st);
    }
    if (r_.max_total_bytes) {
      Status st = DeleteOldestWhile([&] { return total_ > r_.max_total_bytes; }, Why::kTotalBytes);
      if (!st.ok()) return Finish(st);
    }
    if (r_.min_free_bytes) {
      Result<uint64_t> free = env::FreeBytes(root_);
      if (!free.ok()) return Finish(free.status());
      const uint64_t start = *free, freed_before = report_.bytes;
      Status st = DeleteOldestWhile(
          [&] { return start + (report_.bytes - freed_before) < r_.min_free_bytes; },
          Why::kFreeDisk);
      if (!st.ok()) return Finish(st);
    }
    return Finish(Status::Ok());
  }

 private:
  // ---- what is there ----

  Status Scan() {
    const std::string streams = env::Join(root_, "streams");
    Result<std::vector<std::string>> prefixes = env::ListDir(streams);
    if (!prefixes.ok()) return prefixes.status().IsNotFound() ? Status::Ok() : prefixes.status();
    for (const std::string& p : *prefixes) {
      uint64_t prefix_id;
      if (!ParseHexName(p, 8, &prefix_id)) continue;
      Result<std::string> prefix = env::ReadFile(env::Join(streams, p + "/PREFIX"));
      Result<std::vector<std::string>> shards = env::ListDir(env::Join(streams, p));
      if (!shards.ok()) continue;  // removed meanwhile, or unreadable: nothing to delete there
      for (const std::string& s : *shards) {
        uint64_t shard;
        if (!ParseHexName(s, 4, &shard)) continue;
        ShardFiles sh;
        sh.prefix_id = static_cast<uint32_t>(prefix_id);
        sh.shard = static_cast<uint32_t>(shard);
        sh.rel_dir = "streams/" + p + "/" + s;
        sh.dir = env::Join(root_, sh.rel_dir);
        sh.name = prefix.ok() ? ShardStreamName(*prefix, sh.shard) : sh.rel_dir;
        if (Status st = LoadFiles(&sh); !st.ok()) return st;
        if (sh.segs.empty()) continue;
        sh.slot = control_->Find(sh.prefix_id, sh.shard);
        total_ += sh.bytes;
        shards_.push_back(std::move(sh));
      }
    }
    return Status::Ok();
  }

  Status LoadFiles(ShardFiles* sh) {
    Result<std::vector<std::string>> names = env::ListDir(sh->dir);
    if (!names.ok()) return names.status().IsNotFound() ? Status::Ok() : names.status();
    for (const std::string& n : *names) {
      uint64_t base;
      if (ParseFileName(n, "idx", &base)) sh->indexes.push_back(base);
      if (!ParseFileName(n, "seg", &base)) continue;
      Result<SegFile> f = ReadSegFile(env::Join(sh->dir, n), base);
      if (!f.ok()) {
        if (f.status().IsNotFound()) continue;
        return f.status();
      }
      sh->bytes += f->bytes;
      sh->segs.push_back(*f);
    }
    std::sort(sh->segs.begin(), sh->segs.end(),
              [](const SegFile& a, const SegFile& b) { return a.base < b.base; });
    return Status::Ok();
  }

  // Every group that reads a stream protects it from its committed offset on.
  void AttachGroups() {
    const uint32_t n = control_->offset_count();
    for (uint32_t i = 0; i < n; i++) {
      format::OffsetSlot* o = control_->offset(i);
      if (o->state.load(std::memory_order_acquire) != format::kSlotReady ||
          o->group >= control_->group_count()) {
        continue;
      }
      for (ShardFiles& sh : shards_) {
        if (sh.prefix_id == o->prefix_id && sh.shard == o->shard) {
          sh.groups.push_back(GroupOffset{o, control_->group(o->group)});
        }
      }
    }
  }

  // ---- deciding ----

  // The first remaining segment may go if min_segments are left after it and the segment after
  // it holds a published entry: a segment made for a batch that a crash cut short holds none,
  // and the recovery that removes it needs the one before it.
  bool Deletable(const ShardFiles& sh) const {
    if (sh.front + std::max<size_t>(1, r_.min_segments) >= sh.segs.size() || !sh.slot) {
      return false;
    }
    return sh.FirstEnd() < sh.slot->committed_entry.load(std::memory_order_acquire);
  }

  // How long ago the first remaining segment's newest entry was appended, at most: when the
  // segment after it was created. Unknown when that header is damaged.
  std::optional<uint64_t> FirstAge(const ShardFiles& sh) const {
    const std::optional<int64_t>& next = sh.segs[sh.front + 1].created_ns;
    if (!next) return std::nullopt;
    return *next < now_ ? static_cast<uint64_t>(now_ - *next) : 0;
  }

  Status PerShard(ShardFiles* sh) {
    const uint64_t retained = sh->slot ? sh->slot->retained_from.load(std::memory_order_acquire) : 0;
    while (Deletable(*sh) && sh->FirstEnd() <= retained) {
      if (Status st = Delete(sh, Why::kEarlierPass); !st.ok()) return st;
    }
    while (r_.max_age_ns && Deletable(*sh)) {
      const std::optional<uint64_t> age = FirstAge(*sh);
      if (!age || *age <= r_.max_age_ns) break;
      const bool unconsumed = sh->Protect() < sh->FirstEnd();
      if (unconsumed && !(r_.force_delete_after_ns && *age > r_.force_delete_after_ns)) break;
      if (Status st = Delete(sh, unconsumed ? Why::kForced : Why::kAge); !st.ok()) return st;
    }
    while (r_.max_shard_bytes && sh->bytes > r_.max_shard_bytes && Deletable(*sh)) {
      if (Status st = Delete(sh, Why::kShardBytes); !st.ok()) return st;
    }
    return Status::Ok();
  }

  // The shard whose first remaining segment is the oldest of all that may go, or null.
  ShardFiles* OldestFront() {
    ShardFiles* best = nullptr;
    for (ShardFiles& sh : shards_) {
      if (!Deletable(sh)) continue;
      const int64_t created = sh.first().created_ns.value_or(0);
      if (!best || created < best->first().created_ns.value_or(0)) best = &sh;
    }
    return best;
  }

  template <typename Over>
  Status DeleteOldestWhile(Over over, Why why) {
    while (over()) {
      ShardFiles* sh = OldestFront();
      if (!sh) break;  // only what min_segments keeps is left
      if (Status st = Delete(sh, why); !st.ok()) return st;
    }
    return Status::Ok();
  }

  // ---- deleting ----

  // Counts what the groups lose (not again for a deletion an earlier pass counted), tells live
  // processes, then removes the files.
  Status Delete(ShardFiles* sh, Why why) {
    const SegFile& s = sh->first();
    const uint64_t end = sh->FirstEnd();
    if (why != Why::kEarlierPass) CountLoss(*sh, s.base, end);
    if (sh->slot) {
      uint64_t cur = sh->slot->retained_from.load(std::memory_order_acquire);
      while (cur < end && !sh->slot->retained_from.compare_exchange_weak(cur, end)) {
      }
    }
    if (auto hook = delete_hook.load(std::memory_order_relaxed)) hook(report_.segments);
    const std::string file = text::UpperHex(s.base, 16);
    if (Status st = env::Unlink(env::Join(sh->dir, file + ".seg")); !st.ok()) return st;
    (void)env::Unlink(env::Join(sh->dir, file + ".idx"));
    report_.segments++;
    report_.entries += end - s.base;
    report_.bytes += s.bytes;
    report_.deleted.push_back(sh->name + ": " + sh->rel_dir + "/" + file + ".seg (" +
                              EntryRange(s.base, end - s.base) + ", " + std::to_string(s.bytes) +
                              " bytes): " + Reason(why));
    sh->bytes -= s.bytes;
    total_ -= s.bytes;
    sh->front++;
    sh->changed = true;
    return Status::Ok();
  }

  void CountLoss(const ShardFiles& sh, uint64_t base, uint64_t end) {
    const uint64_t slowest = sh.Protect();
    if (slowest >= end) return;
    report_.unconsumed += end - std::max(slowest, base);
    for (const GroupOffset& g : sh.groups) {
      const uint64_t c = g.offset->committed.load(std::memory_order_acquire);
      if (c < end) g.group->retention_lost.fetch_add(end - std::max(c, base));
    }
  }

  // Makes the deletions durable, removes index files left without their segment, and adds the
  // pass to the directory's counters. Returns `st` (the first error) or the report.
  Result<RetentionReport> Finish(Status st) {
    for (ShardFiles& sh : shards_) {
      for (uint64_t base : sh.indexes) {
        if (base < sh.first().base) {
          (void)env::Unlink(env::Join(sh.dir, text::UpperHex(base, 16) + ".idx"));
        }
      }
      if (sh.changed) {
        Status synced = env::FsyncDir(sh.dir);
        if (st.ok()) st = synced;
      }
    }
    format::ControlHeader* h = control_->header();
    h->retention_passes.fetch_add(1);
    h->retention_segments.fetch_add(report_.segments);
    h->retention_entries.fetch_add(report_.entries);
    h->retention_bytes.fetch_add(report_.bytes);
    h->retention_unconsumed.fetch_add(report_.unconsumed);
    h->retention_last_ns.store(now_);
    if (!st.ok()) return st;
    report_.ran = true;
    return report_;
  }

  const std::string& root_;
  const Config::Retention& r_;
  shm::ControlRegion* const control_;
  const int64_t now_;
  std::vector<ShardFiles> shards_;
  uint64_t total_ = 0;
  RetentionReport report_;
};

}  // namespace

void SetRetentionDeleteHook(void (*hook)(uint64_t)) { delete_hook.store(hook); }

void SetRetentionNowNs(int64_t ns) { retention_now_ns.store(ns, std::memory_order_relaxed); }
int64_t RetentionNowNs() {
  const int64_t fixed = retention_now_ns.load(std::memory_order_relaxed);
  return fixed ? fixed : env::NowNs();
}

bool RetentionEnabled(const Config::Retention& r) {
  return r.max_age_ns || r.max_shard_bytes || r.max_total_bytes || r.min_free_bytes;
}

Result<RetentionReport> RunRetentionPass(const std::string& root, const Config& cfg,
                                         shm::ControlRegion* control, int64_t now_ns) {
  return Pass(root, cfg, control, now_ns).Run();
}

}  // namespace comet::internal
