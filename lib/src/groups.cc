#include "groups.h"

#include <fcntl.h>

#include "control.h"
#include "crc32c.h"
#include "env.h"
#include "text.h"

namespace comet::internal {

using namespace format;

namespace {

uint32_t GroupCrc(std::string_view bytes) {
  uint32_t c = crc32c::Extend(0, bytes.data(), grp::kCrc);
  c = crc32c::Extend(c, bytes.data() + kGroupHeaderSize, bytes.size() - kGroupHeaderSize);
  return crc32c::Mask(c);
}

std::string FileName(uint64_t key) { return text::UpperHex(key, 16) + ".grp"; }

}  // namespace

std::string EncodeGroupFile(const GroupFile& g) {
  std::string b(kGroupHeaderSize + g.name.size() + g.records.size() * kGroupRecordSize, '\0');
  char* p = b.data();
  store32(p + grp::kMagic, kGroupMagic);
  store16(p + grp::kMajor, kGroupMajor);
  store16(p + grp::kMinor, 0);
  store32(p + grp::kNameLen, static_cast<uint32_t>(g.name.size()));
  store32(p + grp::kCount, static_cast<uint32_t>(g.records.size()));
  store64(p + grp::kSeq, g.seq);
  std::memcpy(p + grp::kName, g.name.data(), g.name.size());
  char* r = p + grp::kName + g.name.size();
  for (const GroupFile::Record& rec : g.records) {
    store32(r + grp::kRecPrefixId, rec.prefix_id);
    store32(r + grp::kRecShard, rec.shard);
    store64(r + grp::kRecCommitted, rec.committed);
    store64(r + grp::kRecSkipped, rec.skipped);
    r += kGroupRecordSize;
  }
  store32(p + grp::kCrc, GroupCrc(b));
  return b;
}

Status DecodeGroupFile(std::string_view b, const std::string& path, GroupFile* out) {
  auto bad = [&](const std::string& why) {
    return Status::Corrupt("group file " + path + ": " + why);
  };
  if (b.size() < kGroupHeaderSize) {
    return bad(std::to_string(b.size()) + " bytes, shorter than its header");
  }
  const char* p = b.data();
  if (load32(p + grp::kMagic) != kGroupMagic) return bad("bad magic number");
  const uint32_t name_len = load32(p + grp::kNameLen), count = load32(p + grp::kCount);
  if (name_len == 0 || name_len > kMaxGroupName ||
      b.size() != kGroupHeaderSize + name_len + uint64_t{count} * kGroupRecordSize) {
    return bad("its sizes do not add up (" + std::to_string(b.size()) + " bytes)");
  }
  if (load32(p + grp::kCrc) != GroupCrc(b)) return bad("fails its CRC");
  if (load16(p + grp::kMajor) != kGroupMajor) {
    return Status::Version("group file " + path + " has major version " +
                           std::to_string(load16(p + grp::kMajor)) + "; this build reads " +
                           std::to_string(kGroupMajor));
  }
  out->name.assign(p + grp::kName, name_len);
  out->seq = load64(p + grp::kSeq);
  out->records.resize(count);
  const char* r = p + grp::kName + name_len;
  for (GroupFile::Record& rec : out->records) {
    rec.prefix_id = load32(r + grp::kRecPrefixId);
    rec.shard = load32(r + grp::kRecShard);
    rec.committed = load64(r + grp::kRecCommitted);
    rec.skipped = load64(r + grp::kRecSkipped);
    r += kGroupRecordSize;
  }
  return Status::Ok();
}

GroupStore::~GroupStore() { env::Close(lock_fd_); }

void GroupStore::ForgetLockAfterFork() {
  env::Close(lock_fd_);
  lock_fd_ = -1;
}

// REQUIRES: mu_ held.
Status GroupStore::LockFile(uint64_t key, env::LockType type) {
  const std::string dir = env::Join(root_, kGroupsDir);
  if (!dir_made_) {
    if (Status st = env::MkdirAll(dir); !st.ok()) return st;
    dir_made_ = true;
  }
  const std::string path = env::Join(dir, "LOCK");
  if (lock_fd_ < 0) {
    Result<int> fd = env::OpenFile(path, O_RDWR | O_CREAT);
    if (!fd.ok()) return fd.status();
    lock_fd_ = *fd;
  }
  return env::OfdLock(lock_fd_, type, key, 1, true, path);
}

Status GroupStore::Load(std::vector<std::string>* problems) {
  const std::string dir = env::Join(root_, kGroupsDir);
  Result<std::vector<std::string>> names = env::ListDir(dir);
  if (!names.ok()) return names.status().IsNotFound() ? Status::Ok() : names.status();
  for (const std::string& n : *names) {
    uint64_t key;
    if (n.size() != 20 || !n.ends_with(".grp") || !text::ParseUpperHex(n.substr(0, 16), 16, &key)) {
      continue;
    }
    const std::string path = env::Join(dir, n);
    Result<std::string> bytes = env::ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    GroupFile g;
    Status st = DecodeGroupFile(*bytes, path, &g);
    if (st.code() == Code::kVersion) return st;
    if (!st.ok()) {
      const std::string aside = path + ".damaged-" + std::to_string(env::NowNs());
      if (Status mv = env::Rename(path, aside); !mv.ok()) return mv;
      problems->push_back(st.message() + "; moved aside to " + aside +
                          " (its group's offsets are lost unless the control file has them)");
      continue;
    }
    Result<uint32_t> index = control_->AcquireGroup(g.name, key);
    if (!index.ok()) return index.status();
    GroupSlot* slot = control_->group(*index);
    if (slot->seq.load(std::memory_order_acquire) >= g.seq && slot->seq.load() > 0) continue;
    for (const GroupFile::Record& r : g.records) {
      Result<OffsetSlot*> o = control_->AcquireOffset(*index, r.prefix_id, r.shard);
      if (!o.ok()) return o.status();
      (*o)->committed.store(r.committed, std::memory_order_relaxed);
      (*o)->skipped.store(r.skipped, std::memory_order_relaxed);
      (*o)->epoch.fetch_add(1, std::memory_order_relaxed);
    }
    slot->seq.store(g.seq, std::memory_order_release);
    slot->file_seq.store(g.seq, std::memory_order_release);
  }
  // A group whose file is missing (or was set aside above) gets it written at the next flush.
  for (uint32_t i = 0, n = control_->group_count(); i < n; i++) {
    GroupSlot* slot = control_->group(i);
    Result<bool> there = env::Exists(env::Join(dir, FileName(slot->file_key)));
    if (there.ok() && !*there) slot->file_seq.store(~uint64_t{0}, std::memory_order_release);
  }
  return Status::Ok();
}

Status GroupStore::FlushGroup(uint32_t g, bool durable) {
  GroupSlot* slot = control_->group(g);
  if (slot->seq.load(std::memory_order_acquire) == slot->file_seq.load(std::memory_order_acquire)) {
    return Status::Ok();
  }
  std::lock_guard lk(mu_);
  if (Status st = LockFile(slot->file_key, env::LockType::kExclusive); !st.ok()) return st;
  Status st = [&]() -> Status {
    // Read seq before the offsets: the offsets written are at least as new as the seq recorded.
    GroupFile f;
    f.seq = slot->seq.load(std::memory_order_acquire);
    if (f.seq == slot->file_seq.load(std::memory_order_acquire)) return Status::Ok();
    f.name.assign(slot->name, slot->name_len);
    for (uint32_t i = 0, n = control_->offset_count(); i < n; i++) {
      OffsetSlot* o = control_->offset(i);
      if (o->state.load(std::memory_order_acquire) != format::kSlotReady || o->group != g) continue;
      f.records.push_back({o->prefix_id, o->shard, o->committed.load(std::memory_order_acquire),
                           o->skipped.load(std::memory_order_relaxed)});
    }
    const std::string dir = env::Join(root_, kGroupsDir);
    const std::string bytes = EncodeGroupFile(f);
    Status w = env::WriteFile(env::Join(dir, FileName(slot->file_key)), bytes.data(), bytes.size(),
                              durable);
    if (w.ok() && durable) w = env::FsyncDir(dir);
    if (w.ok()) slot->file_seq.store(f.seq, std::memory_order_release);
    return w;
  }();
  (void)LockFile(slot->file_key, env::LockType::kUnlock);
  return st;
}

Status GroupStore::Flush(bool durable) {
  Status first;
  for (uint32_t g = 0, n = control_->group_count(); g < n; g++) {
    if (control_->group(g)->state.load(std::memory_order_acquire) != format::kSlotReady) continue;
    Status st = FlushGroup(g, durable);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

}  // namespace comet::internal
