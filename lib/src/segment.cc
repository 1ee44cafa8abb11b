#include "segment.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "crc32c.h"
#include "env.h"
#include "hot.h"

namespace comet::internal {

using namespace format;

// ---- header encoding -------------------------------------------------------------------------

namespace {

uint32_t HeaderCrc(const char* p, size_t prefix_len) {
  uint32_t c = crc32c::Value(p, seg::kHeaderCrc);
  c = crc32c::Extend(c, p + seg::kPrefix, prefix_len);
  return crc32c::Mask(c);
}

uint32_t SealCrc(const char* p) {
  return crc32c::Mask(crc32c::Value(p + seg::kSealedCount, 16));
}

}  // namespace

void EncodeSegmentHeader(SegmentHeader* h, char* out) {
  // The header CRC is the key of the segment's records: never the one key under which an
  // all-zero record header would pass (see format.h).
  static const uint32_t zero_key = RecordCrc("", 0, 0);
  do {
    EncodeHeaderOnce(h, out);
  } while (h->header_crc == zero_key && ++h->created_ns);
}

void EncodeHeaderOnce(SegmentHeader* h, char* out) {
  std::memset(out, 0, kSegmentHeaderSize);
  store32(out + seg::kMagic, kSegmentMagic);
  store16(out + seg::kMajor, kFormatMajor);
  store16(out + seg::kMinor, kFormatMinor);
  store32(out + seg::kHeaderSize, kSegmentHeaderSize);
  store32(out + seg::kPrefixId, h->prefix_id);
  store32(out + seg::kShard, h->shard);
  store32(out + seg::kPrefixLen, static_cast<uint32_t>(h->prefix.size()));
  store64(out + seg::kBaseEntry, h->base_entry);
  store64(out + seg::kCreatedNs, static_cast<uint64_t>(h->created_ns));
  std::memcpy(out + seg::kPrefix, h->prefix.data(), h->prefix.size());
  h->header_crc = HeaderCrc(out, h->prefix.size());
  store32(out + seg::kHeaderCrc, h->header_crc);
}

void EncodeSeal(char* header, uint64_t count, uint64_t end) {
  store64(header + seg::kSealedCount, count);
  store64(header + seg::kSealedEnd, end);
  store32(header + seg::kSealCrc, SealCrc(header));
}

Status DecodeSegmentHeader(const char* p, size_t n, const std::string& path, SegmentHeader* out) {
  if (n < kSegmentHeaderSize) {
    return Status::Corrupt("segment " + path + " is " + std::to_string(n) +
                           " bytes, shorter than its " + std::to_string(kSegmentHeaderSize) +
                           "-byte header");
  }
  if (load32(p + seg::kMagic) != kSegmentMagic) {
    return Status::Corrupt("segment " + path + " has a bad magic number at offset 0");
  }
  // The CRC first: it covers the version, so a damaged version field is damage, never taken for
  // a newer format (every major keeps bytes [0,48) and the CRC's coverage).
  uint32_t plen = load32(p + seg::kPrefixLen);
  if (plen == 0 || plen > kMaxPrefixLen || load32(p + seg::kHeaderSize) != kSegmentHeaderSize) {
    return Status::Corrupt("segment " + path + " has a malformed header");
  }
  uint32_t crc = load32(p + seg::kHeaderCrc);
  if (crc != HeaderCrc(p, plen)) {
    return Status::Corrupt("segment " + path + " header fails its CRC (offset 40)");
  }
  uint16_t major = load16(p + seg::kMajor);
  if (major < kOldestReadableMajor || major > kFormatMajor) {
    return Status::Version("segment " + path + " has format version " + std::to_string(major) +
                           "." + std::to_string(load16(p + seg::kMinor)) +
                           "; this build reads versions " + std::to_string(kOldestReadableMajor) +
                           ".x to " + std::to_string(kFormatMajor) + ".x");
  }
  out->major = major;
  out->prefix_id = load32(p + seg::kPrefixId);
  out->shard = load32(p + seg::kShard);
  out->prefix.assign(p + seg::kPrefix, plen);
  out->base_entry = load64(p + seg::kBaseEntry);
  out->created_ns = static_cast<int64_t>(load64(p + seg::kCreatedNs));
  out->header_crc = crc;
  uint32_t seal = load32(p + seg::kSealCrc);
  out->sealed = seal != 0 && seal == SealCrc(p);
  out->sealed_count = out->sealed ? load64(p + seg::kSealedCount) : 0;
  out->sealed_end = out->sealed ? load64(p + seg::kSealedEnd) : 0;
  return Status::Ok();
}

COMET_HOT uint32_t RecordCrc(const char* payload, uint32_t size_flags, int64_t ts) {
  char tail[12];
  store32(tail, size_flags);
  store64(tail + 4, static_cast<uint64_t>(ts));
  uint32_t c = crc32c::Value(payload, size_flags & kSizeMask);
  return crc32c::Mask(crc32c::Extend(c, tail, sizeof tail));
}

// ---- sparse index ----------------------------------------------------------------------------

SparseIndex::SparseIndex(uint32_t interval, uint64_t capacity_bytes) : interval_(interval) {
  uint64_t max_records = capacity_bytes / kRecordHeaderSize + 1;
  uint64_t max_nodes = max_records / interval + 2;
  max_chunks_ = (max_nodes + kChunk - 1) / kChunk;
  chunks_ = std::make_unique<std::atomic<uint32_t*>[]>(max_chunks_);
  for (size_t i = 0; i < max_chunks_; i++) chunks_[i].store(nullptr, std::memory_order_relaxed);
}

SparseIndex::~SparseIndex() {
  for (size_t i = 0; i < max_chunks_; i++) delete[] chunks_[i].load(std::memory_order_relaxed);
}

uint32_t SparseIndex::Get(size_t i) const {
  return chunks_[i / kChunk].load(std::memory_order_acquire)[i % kChunk];
}

COMET_HOT void SparseIndex::Push(uint32_t offset) {
  size_t n = size_.load(std::memory_order_relaxed);
  size_t c = n / kChunk;
  if (c >= max_chunks_) return;  // cannot happen for records within the capacity
  uint32_t* chunk = chunks_[c].load(std::memory_order_relaxed);
  if (!chunk) {
    chunk = new uint32_t[kChunk];
    chunks_[c].store(chunk, std::memory_order_release);
  }
  chunk[n % kChunk] = offset;
  size_.store(n + 1, std::memory_order_release);
}

void SparseIndex::Clear() { size_.store(0, std::memory_order_release); }

// ---- segment ---------------------------------------------------------------------------------

Segment::Segment(std::string path, std::string rel, uint32_t index_interval, uint64_t capacity)
    : path_(std::move(path)), rel_(std::move(rel)), capacity_(capacity),
      index_(index_interval, capacity) {}

Segment::~Segment() {
  for (auto [p, len] : retired_maps_) env::Unmap(p, len);
  env::Unmap(ro_map_, reserved_);
  env::Unmap(map_, reserved_);
  env::Close(fd_);
}

Result<std::shared_ptr<Segment>> Segment::Create(const std::string& path, const std::string& rel,
                                                 uint32_t index_interval, uint64_t capacity,
                                                 uint64_t prefault, bool huge) {
  auto s = std::make_shared<Segment>(path, rel, index_interval, capacity);
  s->huge_ = huge;
  Result<int> fd = env::OpenFile(path, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd.ok()) return fd.status();
  s->fd_ = *fd;
  Status st = env::Preallocate(s->fd_, capacity, path);
  if (st.ok()) {
    Result<char*> m = env::Map(s->fd_, capacity, true, path, huge);
    if (m.ok()) {
      s->map_ = *m;
      s->map_len_ = capacity;
      s->reserved_ = capacity;
      st = s->MapForReaders();
    } else {
      st = m.status();
    }
  }
  if (!st.ok()) {
    s.reset();
    (void)env::Unlink(path);
    return st;
  }
  if (prefault > 0) (void)s->Prefault(std::min<uint64_t>(capacity, kSegmentHeaderSize + prefault));
  s->set_state(kTrusted);
  return s;
}

Result<std::shared_ptr<Segment>> Segment::Open(const std::string& path, const std::string& rel,
                                               uint32_t index_interval, bool writable,
                                               uint64_t name_base) {
  Result<int> fd = env::OpenFile(path, writable ? O_RDWR : O_RDONLY);
  if (!fd.ok()) return fd.status();
  Result<uint64_t> size = env::FileSize(*fd, path);
  if (!size.ok()) {
    env::Close(*fd);
    return size.status();
  }
  auto s = std::make_shared<Segment>(path, rel, index_interval, std::max<uint64_t>(*size, 1));
  s->fd_ = *fd;
  Status st;
  if (*size < kSegmentHeaderSize) {
    st = Status::Corrupt("segment " + path + " is " + std::to_string(*size) +
                         " bytes, shorter than its " + std::to_string(kSegmentHeaderSize) +
                         "-byte header");
  } else {
    Result<char*> m = env::Map(s->fd_, *size, writable, path);
    if (!m.ok()) return m.status();
    s->map_ = *m;
    s->map_len_ = *size;
    s->reserved_ = *size;
    st = DecodeSegmentHeader(s->map_, *size, path, &s->header_);
    if (st.ok() && !writable && !s->header_.sealed) st = s->ReserveGrowth();
  }
  if (st.code() == Code::kCorrupt) {
    // Damage to this segment only: it keeps its place (and its entries their numbers) by the
    // base in its file name, and every entry in it reads as CORRUPT.
    s->header_error_ = st.message();
    s->header_ = SegmentHeader{};
    s->header_.base_entry = name_base;
    // Records are still counted (never read) under the key the header claims.
    if (s->map_len() >= kSegmentHeaderSize) s->header_.header_crc = load32(s->map_ + seg::kHeaderCrc);
    s->SetRecordRules();
    s->set_state(kTrusted);
    return s;
  }
  if (!st.ok()) return st;
  s->SetRecordRules();
  return s;
}

Status Segment::Activate(SegmentHeader* h, const std::string& final_path,
                         const std::string& final_rel) {
  EncodeSegmentHeader(h, map_);
  header_ = *h;
  SetRecordRules();
  Status st = env::Rename(path_, final_path);
  if (!st.ok()) return st;
  path_ = final_path;
  rel_ = final_rel;
  return Status::Ok();
}

void Segment::SetRecordRules() {
  const bool v1 = header_.major < 2 && header_error_.empty();
  record_key_ = v1 ? 0 : header_.header_crc;
  allowed_bits_ = v1 ? kSizeMask | kFlagZstd : kSizeMask | kFlagZstd | kFlagBatchMore;
}

Status Segment::PrepareForAppend(uint64_t end, uint64_t capacity, uint64_t prefault, bool huge) {
  Status st = env::Truncate(fd_, end, path_);
  if (st.ok()) st = env::Preallocate(fd_, capacity, path_);
  if (!st.ok()) return st;
  huge_ = huge;
  Result<char*> m = env::Map(fd_, capacity, true, path_, huge);
  if (!m.ok()) return m.status();
  if (ro_map_) retired_maps_.emplace_back(ro_map_, reserved_);
  ro_map_ = nullptr;
  retired_maps_.emplace_back(map_, reserved_);
  map_ = *m;
  map_len_ = capacity;
  reserved_ = capacity;
  if (Status st = MapForReaders(); !st.ok()) return st;
  capacity_ = capacity;
  populated_.store(env::AlignDown(end, env::kPageSize), std::memory_order_relaxed);
  if (prefault > 0) (void)Prefault(std::min<uint64_t>(capacity, end + prefault));
  return Status::Ok();
}

Result<uint64_t> Segment::Prefault(uint64_t upto, uint64_t writer) {
  const uint64_t from = std::max<uint64_t>(populated(), env::AlignUp(writer, env::kPageSize));
  upto = std::min<uint64_t>(env::AlignUp(upto, env::kPageSize), map_len());
  if (upto <= from) return uint64_t{0};
  if (Status st = env::PopulateWrite(map_, from, upto - from); !st.ok()) return st;
  for (uint64_t off = from; off < upto; off += env::kPageSize) {
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(map_ + off))
        .fetch_add(0, std::memory_order_relaxed);
  }
  populated_.store(upto, std::memory_order_relaxed);
  return upto - from;
}

Status Segment::MapForReaders() {
  Result<char*> m = env::Map(fd_, reserved_, false, path_, huge_);
  if (!m.ok()) return m.status();
  ro_map_ = *m;
  return Status::Ok();
}

void Segment::DropCached() {
  const uint64_t len = std::min<uint64_t>(data_end_, map_len());
  env::DropMapped(map_, 0, len);
  if (ro_map_) env::DropMapped(ro_map_, 0, len);
  env::DropCached(fd_);
}

void Segment::DropWrittenPages(uint64_t upto) {
  if (!ro_map_) return;  // readers share the writable mapping: keep it
  const uint64_t step = huge_ ? env::kHugePageSize : env::kPageSize;
  const uint64_t target = env::AlignDown(std::min<uint64_t>(upto, map_len()), step);
  uint64_t done = dropped_.load(std::memory_order_relaxed);
  while (done < target) {
    if (dropped_.compare_exchange_weak(done, target, std::memory_order_relaxed)) {
      env::DropMapped(map_, done, target - done);
      return;
    }
  }
}

bool Segment::CheckRecord(uint64_t off, uint64_t limit) const {
  if (off + kRecordHeaderSize > limit) return false;
  const char* p = rmap() + off;
  uint32_t sf = load32(p + rec::kSizeFlags);
  if (sf & ~allowed_bits_) return false;
  uint64_t size = sf & kSizeMask;
  if (off + kRecordHeaderSize + size > limit) return false;
  int64_t ts = static_cast<int64_t>(load64(p + rec::kTimestamp));
  return load32(p + rec::kCrc) == (RecordCrc(p + kRecordHeaderSize, sf, ts) ^ record_key_);
}

void Segment::AdoptScan(ScanResult* r) {
  const Damage* published = nullptr;
  if (!r->bad.empty()) {
    auto d = std::make_unique<Damage>();
    for (uint64_t k : r->bad) d->bad.push_back(base() + k);
    d->offsets = std::move(r->offsets);
    published = d.get();
    damage_maps_.push_back(std::move(d));
  }
  damage_.store(published, std::memory_order_release);
  set_state(kTrusted);
}

void Segment::Distrust() {
  int trusted = kTrusted;
  state_.compare_exchange_strong(trusted, kUntrusted, std::memory_order_acq_rel);
}

void Segment::Seal(uint64_t count, uint64_t end) {
  EncodeSeal(map_, count, end);
  header_.sealed = true;
  header_.sealed_count = count;
  header_.sealed_end = end;
  MarkSealed(count, end);
}

void Segment::SealAt(uint64_t count, uint64_t end) {
  (void)env::Truncate(fd_, end, path_);
  Seal(count, end);
}

void Segment::CutSeal(uint64_t count, uint64_t end, bool write) {
  if (write) {
    Seal(count, end);
    return;
  }
  header_.sealed = true;
  header_.sealed_count = count;
  header_.sealed_end = end;
  MarkSealed(count, end);
}

bool Segment::HeaderSeal(uint64_t* count, uint64_t* end) {
  SegmentHeader h;
  if (!DecodeSegmentHeader(rmap(), map_len(), path_, &h).ok() || !h.sealed) return false;
  if (h.sealed_end < kSegmentHeaderSize || !Grow(h.sealed_end)) return false;
  *count = h.sealed_count;
  *end = h.sealed_end;
  return true;
}

bool Segment::RefreshSeal(uint64_t committed) {
  if (sealed()) return true;
  uint64_t count, end;
  if (!HeaderSeal(&count, &end) || !SealCommitted(count, committed)) return false;
  MarkSealed(count, end);
  return true;
}

// Maps the file again over kMaxGrowth bytes: pages past its end are never touched until the
// file covers them (Grow).
Status Segment::ReserveGrowth() {
  const size_t reserve = std::max<uint64_t>(map_len(), kMaxGrowth);
  Result<char*> m = env::Map(fd_, reserve, false, path_);
  if (!m.ok()) return m.status();
  env::Unmap(map_, reserved_);
  map_ = *m;
  reserved_ = reserve;
  return Status::Ok();
}

bool Segment::Grow(uint64_t want) {
  if (want <= map_len()) return true;
  Result<uint64_t> size = env::FileSize(fd_, path_);
  if (!size.ok()) return false;
  const size_t len = std::min<uint64_t>(*size, reserved_);
  size_t cur = map_len();
  while (cur < len && !map_len_.compare_exchange_weak(cur, len, std::memory_order_acq_rel)) {
  }
  return want <= map_len();
}

bool Segment::LoadIndexFile(const std::string& idx_path) {
  Result<std::string> data = env::ReadFile(idx_path);
  if (!data.ok() || data->size() < kIndexHeaderSize) return false;
  const char* p = data->data();
  uint32_t nodes = load32(p + idx::kNodeCount);
  if (load32(p + idx::kMagic) != kIndexMagic || load16(p + idx::kMajor) != kIndexMajor ||
      load32(p + idx::kInterval) != index_.interval() ||
      data->size() != kIndexHeaderSize + size_t{nodes} * 4 ||
      load64(p + idx::kBaseEntry) != base() || load32(p + idx::kSegmentCrc) != header_.header_crc) {
    return false;
  }
  uint32_t c = crc32c::Value(p, idx::kCrc);
  c = crc32c::Extend(c, p + idx::kNodes, size_t{nodes} * 4);
  if (crc32c::Mask(c) != load32(p + idx::kCrc)) return false;
  uint64_t count = load64(p + idx::kEntryCount), end = load64(p + idx::kDataEnd);
  if (end > map_len() || nodes != (count + index_.interval() - 1) / index_.interval()) return false;
  if (sealed() && (count != sealed_count() || end != data_end_)) return false;
  index_.Clear();
  for (uint32_t i = 0; i < nodes; i++) {
    uint32_t off = load32(p + idx::kNodes + size_t{i} * 4);
    if (off < kSegmentHeaderSize || off >= end) return false;
    index_.Push(off);
  }
  if (!sealed()) MarkSealed(count, end);
  return true;
}

Status Segment::WriteIndexFile(const std::string& idx_path) const {
  size_t nodes = index_.size();
  std::string buf(kIndexHeaderSize + nodes * 4, '\0');
  char* p = buf.data();
  store32(p + idx::kMagic, kIndexMagic);
  store16(p + idx::kMajor, kIndexMajor);
  store16(p + idx::kMinor, 0);
  store32(p + idx::kInterval, index_.interval());
  store32(p + idx::kNodeCount, static_cast<uint32_t>(nodes));
  store64(p + idx::kBaseEntry, base());
  store64(p + idx::kEntryCount, sealed_count());
  store64(p + idx::kDataEnd, data_end_);
  store32(p + idx::kSegmentCrc, header_.header_crc);
  for (size_t i = 0; i < nodes; i++) store32(p + idx::kNodes + i * 4, index_.Get(i));
  uint32_t c = crc32c::Value(p, idx::kCrc);
  c = crc32c::Extend(c, p + idx::kNodes, nodes * 4);
  store32(p + idx::kCrc, crc32c::Mask(c));
  return env::WriteFile(idx_path, buf.data(), buf.size(), false);
}

uint64_t Segment::OffsetOf(uint64_t e) const {
  uint64_t k = e - base();
  // A damage map answers only for the entries its scan saw (a follower's active segment grows
  // past them): later ones are placed by another scan.
  const Damage* d = damage_.load(std::memory_order_acquire);
  if (state() == kTrusted && d) return k < d->offsets.size() ? d->offsets[k] : kBadOffset;
  // Without an index node (scanned before any entry was in it), entry 0 follows the header.
  size_t n = index_.size();
  size_t node = n == 0 ? 0 : std::min<size_t>(k / index_.interval(), n - 1);
  uint64_t off = n == 0 ? kSegmentHeaderSize : index_.Get(node);
  const uint64_t len = map_len();
  for (uint64_t i = uint64_t{node} * index_.interval(); i < k; i++) {
    if (off + kRecordHeaderSize > len) return kBadOffset;
    off += kRecordHeaderSize + (load32(rmap() + off + rec::kSizeFlags) & kSizeMask);
  }
  return off + kRecordHeaderSize <= len ? off : kBadOffset;
}

bool Segment::IsBad(uint64_t e) const {
  if (!header_error_.empty()) return true;
  const Damage* d = damage_.load(std::memory_order_acquire);
  return d && std::binary_search(d->bad.begin(), d->bad.end(), e);
}

}  // namespace comet::internal
