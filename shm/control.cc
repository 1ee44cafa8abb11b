#include "control.h"

#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <thread>

#include "crc32c.h"
#include "env.h"
#include "text.h"

namespace comet::shm {

namespace bip = boost::interprocess;
using format::ControlHeader;
using format::GroupSlot;
using format::OffsetSlot;
using format::ShardSlot;

namespace {

uint32_t HeaderCrc(const ControlHeader* h) {
  char bytes[128];
  std::memcpy(bytes, h, sizeof bytes);
  std::memset(bytes + 8, 0, 4);   // version is published after the CRC is written
  std::memset(bytes + 64, 0, 4);  // the CRC itself
  return crc32c::Mask(crc32c::Value(bytes, sizeof bytes));
}

// The first key from the name's hash (FNV-1a 64, never 0) for which `taken` is false.
template <class Taken>
uint64_t FreeFileKey(std::string_view name, Taken taken) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  h &= (uint64_t{1} << 62) - 1;  // stays a valid lock offset (off_t) too
  if (h == 0) h = 1;
  while (taken(h)) h = h % ((uint64_t{1} << 62) - 1) + 1;
  return h;
}

// Processes holding a member lock on DIR/slots/*.lock (see membership.h).
int LiveMembers(const std::string& dir) {
  Result<std::vector<std::string>> names = env::ListDir(env::Join(dir, "slots"));
  if (!names.ok()) return 0;
  int live = 0;
  for (const std::string& n : *names) {
    if (!n.ends_with(".lock")) continue;
    if (env::OfdLockHeldAt(env::Join(dir, "slots/" + n), 0, 0)) live++;
  }
  return live;
}

}  // namespace

Status ValidateGroupName(std::string_view name) {
  if (name.empty() || name.size() > format::kMaxGroupName) {
    return Status::Invalid("consumer group name of " + std::to_string(name.size()) +
                           " bytes; names are 1 to " + std::to_string(format::kMaxGroupName) +
                           " bytes");
  }
  return Status::Ok();
}

Status ControlRegion::Create(const std::string& path, const ControlLimits& limits) {
  const uint32_t max_processes = limits.max_processes, max_streams = limits.max_streams;
  const size_t size = format::control_file_size(max_processes, max_streams, limits.max_groups,
                                                limits.max_offsets);
  std::string tmp = path + ".tmp";
  Result<int> fd = env::OpenFile(tmp, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd.ok()) return fd.status();
  Status st = env::Preallocate(*fd, size, tmp);
  char* p = nullptr;
  if (st.ok()) {
    Result<char*> m = env::Map(*fd, size, true, tmp);
    if (m.ok()) p = *m; else st = m.status();
  }
  env::Close(*fd);
  if (!st.ok()) {
    (void)env::Unlink(tmp);
    return st;
  }
  auto* h = new (p) ControlHeader();
  h->magic = format::kControlMagic;
  h->header_size = format::kControlHeaderSize;
  h->max_processes = max_processes;
  h->max_shards = max_streams;
  h->file_size = size;
  h->created_ns = env::NowNs();
  h->process_table_offset = format::process_table_offset();
  h->metrics_table_offset = format::metrics_table_offset(max_processes);
  h->shard_table_offset = format::shard_table_offset(max_processes);
  h->max_groups = limits.max_groups;
  h->max_offsets = limits.max_offsets;
  h->group_table_offset = format::group_table_offset(max_processes, max_streams);
  h->offset_table_offset =
      format::offset_table_offset(max_processes, max_streams, limits.max_groups);
  h->header_crc = HeaderCrc(h);
  // Published last: an attacher that sees a version sees everything above.
  h->version.store(format::control_version(format::kControlMajor, format::kControlMinor),
                   std::memory_order_release);
  env::Unmap(p, size);
  return env::Rename(tmp, path);
}

Status ControlRegion::Attach(bool writable) {
  Result<int> fd = env::OpenFile(path_, O_RDONLY);
  if (!fd.ok()) return fd.status();
  Result<uint64_t> size = env::FileSize(*fd, path_);
  env::Close(*fd);
  if (!size.ok()) return size.status();
  if (*size < format::kControlHeaderSize) {
    return Status::Corrupt("control file " + path_ + " is " + std::to_string(*size) +
                           " bytes, shorter than its header");
  }
  try {
    file_ = bip::file_mapping(path_.c_str(), writable ? bip::read_write : bip::read_only);
    region_ = bip::mapped_region(file_, writable ? bip::read_write : bip::read_only);
  } catch (const bip::interprocess_exception& e) {
    return Status::Io("map control file " + path_ + ": " + e.what());
  }
  if (region_.get_size() < format::kControlHeaderSize) {
    return Status::Corrupt("control file " + path_ + " is " + std::to_string(region_.get_size()) +
                           " bytes, shorter than its header");
  }
  header_ = static_cast<ControlHeader*>(region_.get_address());
  return Validate();
}

Status ControlRegion::Validate() const {
  const ControlHeader* h = header_;
  if (h->magic != format::kControlMagic) {
    return Status::Corrupt("control file " + path_ + " has a bad magic number (not a Comet file)");
  }
  // Another creator may still be filling it: wait briefly for the version.
  uint32_t v = h->version.load(std::memory_order_acquire);
  for (int i = 0; v == 0 && i < 200; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    v = h->version.load(std::memory_order_acquire);
  }
  if (v == 0) return Status::Corrupt("control file " + path_ + " was never finished (version 0)");
  const std::string ours =
      text::VersionText(format::control_version(format::kControlMajor, format::kControlMinor));
  if ((v >> 16) != format::kControlMajor) {
    return Status::Version("control file " + path_ + " has layout version " +
                           text::VersionText(v) + "; this build uses " + ours);
  }
  if ((v & 0xFFFF) < 1) {
    // Layout 1.0 has no consumer-group tables; everything in it can be rebuilt.
    return Status::Corrupt("control file " + path_ + " has layout version " +
                           text::VersionText(v) + ", older than this build's " + ours);
  }
  if (h->header_crc != HeaderCrc(h)) {
    return Status::Corrupt("control file " + path_ + " header fails its CRC");
  }
  size_t want = format::control_file_size(h->max_processes, h->max_shards, h->max_groups,
                                          h->max_offsets);
  if (h->header_size != format::kControlHeaderSize || h->file_size != want ||
      region_.get_size() < want ||
      h->process_table_offset != format::process_table_offset() ||
      h->metrics_table_offset != format::metrics_table_offset(h->max_processes) ||
      h->shard_table_offset != format::shard_table_offset(h->max_processes) ||
      h->group_table_offset != format::group_table_offset(h->max_processes, h->max_shards) ||
      h->offset_table_offset !=
          format::offset_table_offset(h->max_processes, h->max_shards, h->max_groups) ||
      h->shard_count.load(std::memory_order_acquire) > h->max_shards ||
      h->group_count.load(std::memory_order_acquire) > h->max_groups ||
      h->offset_count.load(std::memory_order_acquire) > h->max_offsets) {
    return Status::Corrupt("control file " + path_ + " has inconsistent sizes");
  }
  return Status::Ok();
}

void ControlRegion::SetTables() {
  char* base = reinterpret_cast<char*>(header_);
  shards_ = reinterpret_cast<ShardSlot*>(base + header_->shard_table_offset);
  groups_ = reinterpret_cast<GroupSlot*>(base + header_->group_table_offset);
  offsets_ = reinterpret_cast<OffsetSlot*>(base + header_->offset_table_offset);
}

Result<std::unique_ptr<ControlRegion>> ControlRegion::OpenWriter(const std::string& dir,
                                                                 const ControlLimits& limits,
                                                                 std::string* note) {
  std::unique_ptr<ControlRegion> r(new ControlRegion());
  r->path_ = env::Join(dir, kFileName);
  Result<bool> exists = env::Exists(r->path_);
  if (!exists.ok()) return exists.status();
  if (*exists) {
    Status st = r->Attach(true);
    if (st.ok()) {
      r->SetTables();
      return r;
    }
    if (st.code() != Code::kCorrupt) return st;
    // Others may still map the damaged file: rebuilding under them would split the directory.
    if (int live = LiveMembers(dir); live > 0) {
      return Status::Corrupt(st.message() + "; " + std::to_string(live) +
                             " live processes still use it, so it cannot be rebuilt now");
    }
    std::string aside = r->path_ + ".damaged-" + std::to_string(env::NowNs());
    if (Status mv = env::Rename(r->path_, aside); !mv.ok()) return mv;
    *note = st.message() + "; moved aside to " + aside + " and rebuilt from the segments";
    r.reset(new ControlRegion());
    r->path_ = env::Join(dir, kFileName);
  }
  if (Status st = Create(r->path_, limits); !st.ok()) return st;
  if (Status st = r->Attach(true); !st.ok()) return st;
  r->fresh_ = true;
  r->SetTables();
  if (*exists) r->header_->rebuilds.fetch_add(1, std::memory_order_relaxed);
  return r;
}

Result<std::unique_ptr<ControlRegion>> ControlRegion::OpenReader(const std::string& dir) {
  std::unique_ptr<ControlRegion> r(new ControlRegion());
  r->path_ = env::Join(dir, kFileName);
  Result<bool> exists = env::Exists(r->path_);
  if (!exists.ok()) return exists.status();
  if (!*exists) return Status::NotFound("no control file " + r->path_);
  if (Status st = r->Attach(false); !st.ok()) return st;
  r->SetTables();
  return r;
}

ShardSlot* ControlRegion::Find(uint32_t prefix_id, uint32_t shard) const {
  uint32_t n = header_->shard_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    ShardSlot* s = &shards_[i];
    if (s->state.load(std::memory_order_acquire) == format::kSlotReady &&
        s->prefix_id == prefix_id && s->shard == shard) {
      return s;
    }
  }
  return nullptr;
}

// Allocation in every table is serialised across processes by an OFD lock on byte 0 of the
// control file: the kernel releases it if the holder dies, so a crash never wedges a table.
Status ControlRegion::WithAllocationLock(const std::function<Status()>& fn) {
  if (lock_fd_ < 0) {
    Result<int> fd = env::OpenFile(path_, O_RDWR);
    if (!fd.ok()) return fd.status();
    lock_fd_ = *fd;
  }
  Status st = env::OfdLock(lock_fd_, env::LockType::kExclusive, 0, 1, true, path_);
  if (!st.ok()) return st;
  st = fn();
  (void)env::OfdLock(lock_fd_, env::LockType::kUnlock, 0, 1, false, path_);
  return st;
}

Result<ShardSlot*> ControlRegion::Acquire(uint32_t prefix_id, uint32_t shard) {
  if (ShardSlot* s = Find(prefix_id, shard)) return s;
  ShardSlot* found = nullptr;
  Status st = WithAllocationLock([&]() -> Status {
    found = Find(prefix_id, shard);
    if (found) return Status::Ok();
    uint32_t n = header_->shard_count.load(std::memory_order_relaxed);
    if (n >= header_->max_shards) {
      return Status::Full("control file " + path_ + " shard table is full (" +
                          std::to_string(header_->max_shards) +
                          " streams; raise storage.max_streams for a new directory)");
    }
    found = &shards_[n];
    std::memset(static_cast<void*>(found), 0, sizeof(ShardSlot));
    found->prefix_id = prefix_id;
    found->shard = shard;
    found->state.store(format::kSlotReady, std::memory_order_release);
    header_->shard_count.store(n + 1, std::memory_order_release);
    env::FutexWake(&header_->shard_count, INT32_MAX);  // consumers waiting for new streams
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return found;
}

int64_t ControlRegion::FindGroup(std::string_view name) const {
  uint32_t n = group_count();
  for (uint32_t i = 0; i < n; i++) {
    const GroupSlot& g = groups_[i];
    if (g.state.load(std::memory_order_acquire) == format::kSlotReady &&
        g.name_len == name.size() && std::memcmp(g.name, name.data(), name.size()) == 0) {
      return i;
    }
  }
  return -1;
}

Result<uint32_t> ControlRegion::AcquireGroup(std::string_view name, uint64_t file_key) {
  if (int64_t i = FindGroup(name); i >= 0) return static_cast<uint32_t>(i);
  if (Status st = ValidateGroupName(name); !st.ok()) return st;
  uint32_t index = 0;
  Status st = WithAllocationLock([&]() -> Status {
    if (int64_t i = FindGroup(name); i >= 0) {
      index = static_cast<uint32_t>(i);
      return Status::Ok();
    }
    uint32_t n = header_->group_count.load(std::memory_order_relaxed);
    if (n >= header_->max_groups) {
      return Status::Full("control file " + path_ + " consumer group table is full (" +
                          std::to_string(header_->max_groups) +
                          " groups; raise consumers.max_groups for a new directory)");
    }
    auto taken = [&](uint64_t key) {
      for (uint32_t i = 0; i < n; i++) {
        if (groups_[i].file_key == key) return true;
      }
      return false;
    };
    GroupSlot* g = &groups_[n];
    std::memset(static_cast<void*>(g), 0, sizeof(GroupSlot));
    g->name_len = static_cast<uint32_t>(name.size());
    std::memcpy(g->name, name.data(), name.size());
    g->file_key = file_key != 0 && !taken(file_key) ? file_key : FreeFileKey(name, taken);
    g->state.store(format::kSlotReady, std::memory_order_release);
    header_->group_count.store(n + 1, std::memory_order_release);
    index = n;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return index;
}

GroupSlot* ControlRegion::group(uint32_t i) const { return &groups_[i]; }

OffsetSlot* ControlRegion::FindOffset(uint32_t group, uint32_t prefix_id, uint32_t shard) const {
  uint32_t n = offset_count();
  for (uint32_t i = 0; i < n; i++) {
    OffsetSlot* o = &offsets_[i];
    if (o->state.load(std::memory_order_acquire) == format::kSlotReady && o->group == group &&
        o->prefix_id == prefix_id && o->shard == shard) {
      return o;
    }
  }
  return nullptr;
}

Result<OffsetSlot*> ControlRegion::AcquireOffset(uint32_t group, uint32_t prefix_id,
                                                 uint32_t shard) {
  if (OffsetSlot* o = FindOffset(group, prefix_id, shard)) return o;
  OffsetSlot* found = nullptr;
  Status st = WithAllocationLock([&]() -> Status {
    found = FindOffset(group, prefix_id, shard);
    if (found) return Status::Ok();
    uint32_t n = header_->offset_count.load(std::memory_order_relaxed);
    if (n >= header_->max_offsets) {
      return Status::Full("control file " + path_ + " consumer offset table is full (" +
                          std::to_string(header_->max_offsets) +
                          " group and stream pairs; raise consumers.max_offsets for a new "
                          "directory)");
    }
    found = &offsets_[n];
    std::memset(static_cast<void*>(found), 0, sizeof(OffsetSlot));
    found->group = group;
    found->prefix_id = prefix_id;
    found->shard = shard;
    found->state.store(format::kSlotReady, std::memory_order_release);
    header_->offset_count.store(n + 1, std::memory_order_release);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return found;
}

OffsetSlot* ControlRegion::offset(uint32_t i) const { return &offsets_[i]; }

ControlRegion::~ControlRegion() { env::Close(lock_fd_); }

void ControlRegion::ForgetLockAfterFork() {
  env::Close(lock_fd_);
  lock_fd_ = -1;
}

ShardSlot* ControlRegion::shard_at(uint32_t i) const { return &shards_[i]; }

format::ProcessSlot* ControlRegion::process(uint32_t i) const {
  return reinterpret_cast<format::ProcessSlot*>(reinterpret_cast<char*>(header_) +
                                                header_->process_table_offset) + i;
}

format::ProcessMetrics* ControlRegion::metrics(uint32_t i) const {
  return reinterpret_cast<format::ProcessMetrics*>(reinterpret_cast<char*>(header_) +
                                                   header_->metrics_table_offset) + i;
}

}  // namespace comet::shm
