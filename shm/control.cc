#include "control.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "crc32c.h"
#include "env.h"

namespace comet::shm {

namespace bip = boost::interprocess;
using format::ControlHeader;
using format::ShardSlot;

namespace {

uint32_t HeaderCrc(const ControlHeader* h) {
  char bytes[64];
  std::memcpy(bytes, h, sizeof bytes);
  std::memset(bytes + 8, 0, 4);  // version is published after the CRC is written
  return crc32c::Mask(crc32c::Value(bytes, sizeof bytes));
}

std::string VersionText(uint32_t v) {
  return std::to_string(v >> 16) + "." + std::to_string(v & 0xFFFF);
}

// Processes holding a member lock on DIR/slots/*.lock (see membership.h).
int LiveMembers(const std::string& dir) {
  Result<std::vector<std::string>> names = env::ListDir(env::Join(dir, "slots"));
  if (!names.ok()) return 0;
  int live = 0;
  for (const std::string& n : *names) {
    if (!n.ends_with(".lock")) continue;
    Result<int> fd = env::OpenFile(env::Join(dir, "slots/" + n), O_RDONLY);
    if (!fd.ok()) continue;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(*fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) live++;
    env::Close(*fd);
  }
  return live;
}

}  // namespace

Status ControlRegion::Create(const std::string& path, uint32_t max_streams,
                             uint32_t max_processes) {
  const size_t size = format::control_file_size(max_processes, max_streams);
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
  if ((v >> 16) != format::kControlMajor) {
    return Status::Version("control file " + path_ + " has layout version " + VersionText(v) +
                           "; this build uses " +
                           VersionText(format::control_version(format::kControlMajor,
                                                               format::kControlMinor)));
  }
  if (h->header_crc != HeaderCrc(h)) {
    return Status::Corrupt("control file " + path_ + " header fails its CRC");
  }
  size_t want = format::control_file_size(h->max_processes, h->max_shards);
  if (h->header_size != format::kControlHeaderSize || h->file_size != want ||
      region_.get_size() < want ||
      h->process_table_offset != format::process_table_offset() ||
      h->metrics_table_offset != format::metrics_table_offset(h->max_processes) ||
      h->shard_table_offset != format::shard_table_offset(h->max_processes) ||
      h->shard_count.load(std::memory_order_acquire) > h->max_shards) {
    return Status::Corrupt("control file " + path_ + " has inconsistent sizes");
  }
  return Status::Ok();
}

Result<std::unique_ptr<ControlRegion>> ControlRegion::OpenWriter(const std::string& dir,
                                                                 uint32_t max_streams,
                                                                 uint32_t max_processes,
                                                                 std::string* note) {
  std::unique_ptr<ControlRegion> r(new ControlRegion());
  r->path_ = env::Join(dir, kFileName);
  Result<bool> exists = env::Exists(r->path_);
  if (!exists.ok()) return exists.status();
  if (*exists) {
    Status st = r->Attach(true);
    if (st.ok()) {
      r->shards_ = reinterpret_cast<ShardSlot*>(reinterpret_cast<char*>(r->header_) +
                                                r->header_->shard_table_offset);
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
  if (Status st = Create(r->path_, max_streams, max_processes); !st.ok()) return st;
  if (Status st = r->Attach(true); !st.ok()) return st;
  r->fresh_ = true;
  r->shards_ = reinterpret_cast<ShardSlot*>(reinterpret_cast<char*>(r->header_) +
                                            r->header_->shard_table_offset);
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
  r->shards_ = reinterpret_cast<ShardSlot*>(reinterpret_cast<char*>(r->header_) +
                                            r->header_->shard_table_offset);
  return r;
}

ShardSlot* ControlRegion::Find(uint32_t prefix_id, uint32_t shard) const {
  uint32_t n = header_->shard_count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; i++) {
    ShardSlot* s = &shards_[i];
    if (s->state.load(std::memory_order_acquire) == 1 && s->prefix_id == prefix_id &&
        s->shard == shard) {
      return s;
    }
  }
  return nullptr;
}

// Slot allocation is serialised across processes by an OFD lock on byte 0 of the control file:
// the kernel releases it if the holder dies, so a crash never wedges the table.
Result<ShardSlot*> ControlRegion::Acquire(uint32_t prefix_id, uint32_t shard) {
  if (ShardSlot* s = Find(prefix_id, shard)) return s;
  if (lock_fd_ < 0) {
    Result<int> fd = env::OpenFile(path_, O_RDWR);
    if (!fd.ok()) return fd.status();
    lock_fd_ = *fd;
  }
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 1;
  while (fcntl(lock_fd_, F_OFD_SETLKW, &fl) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, "lock the shard table of " + path_);
  }
  ShardSlot* found = Find(prefix_id, shard);
  Status err;
  if (!found) {
    uint32_t n = header_->shard_count.load(std::memory_order_relaxed);
    if (n >= header_->max_shards) {
      err = Status::Full("control file " + path_ + " shard table is full (" +
                         std::to_string(header_->max_shards) +
                         " streams; raise storage.max_streams for a new directory)");
    } else {
      found = &shards_[n];
      std::memset(static_cast<void*>(found), 0, sizeof(ShardSlot));
      found->prefix_id = prefix_id;
      found->shard = shard;
      found->state.store(1, std::memory_order_release);
      header_->shard_count.store(n + 1, std::memory_order_release);
    }
  }
  fl.l_type = F_UNLCK;
  fcntl(lock_fd_, F_OFD_SETLK, &fl);
  if (!err.ok()) return err;
  return found;
}

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
