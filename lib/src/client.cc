// Client: the data directory, its writer claim, the prefix registry, the shards and the
// background threads.
#include "comet/client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "control.h"
#include "env.h"
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

class ClientImpl {
 public:
  ClientImpl(std::string dir, const Config& cfg) {
    ctx_.cfg = cfg;
    ctx_.root = std::move(dir);
    ctx_.read_only = cfg.open.read_only;
    ctx_.maintainer = &maintainer_;
    ctx_.syncer = &syncer_;
  }
  ~ClientImpl() { (void)Close(); }

  Status Open();
  Status Close();
  Result<Stream*> GetStream(std::string_view name);
  Result<Stream*> FindStream(std::string_view name);
  Result<Iterator> Scan(Stream* s, uint64_t from);
  std::vector<std::string> StreamNames();
  Status CheckOpen() const {
    if (closed_.load(std::memory_order_acquire)) {
      return Status::Closed("client for " + ctx_.root + " is closed");
    }
    return Status::Ok();
  }
  Status SyncAll();
  std::vector<std::shared_ptr<Shard>> AllShards();

  ShardContext ctx_;
  std::vector<std::string> report_;
  std::atomic<bool> closed_{false};

 private:
  Status ClaimWriter();
  Status LoadPrefixes();
  Result<uint32_t> RegisterPrefix(const std::string& prefix);
  Result<std::shared_ptr<Shard>> LoadShard(uint32_t prefix_id, const std::string& prefix,
                                           uint32_t shard);
  void MaintainerLoop();
  void SyncerLoop();

  int lock_fd_ = -1;
  std::unique_ptr<shm::ControlRegion> control_;
  Wakeup maintainer_, syncer_;
  std::thread maintainer_thread_, syncer_thread_;
  std::atomic<bool> stop_{false};

  std::mutex registry_mu_;  // prefix registration and shard creation
  std::map<std::string, uint32_t> prefix_ids_;
  uint32_t next_prefix_id_ = 0;

  mutable std::shared_mutex streams_mu_;
  std::unordered_map<std::string, std::unique_ptr<Stream>> streams_;
};

Status ClientImpl::ClaimWriter() {
  std::string path = env::Join(ctx_.root, kLockFile);
  Result<int> fd = env::OpenFile(path, O_RDWR | O_CREAT);
  if (!fd.ok()) return fd.status();
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(*fd, F_OFD_SETLK, &fl) != 0) {
    int err = errno;
    std::string holder;
    Result<std::string> text = env::ReadFile(path);
    if (text.ok()) holder = text->substr(0, text->find('\n'));
    env::Close(*fd);
    if (err == EAGAIN || err == EACCES) {
      return Status::NotOwner("data directory " + ctx_.root + " is held by another writer" +
                              (holder.empty() ? "" : " (pid " + holder + ")") +
                              "; open it read-only (open.read_only=true) to read it");
    }
    return Status::FromErrno(err, "lock " + path);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(*fd, 0) != 0 || pwrite(*fd, pid.data(), pid.size(), 0) < 0) {
    Status st = Status::FromErrno(errno, "write " + path);
    env::Close(*fd);
    return st;
  }
  lock_fd_ = *fd;
  return Status::Ok();
}

Status ClientImpl::Open() {
  if (Status st = ctx_.cfg.Validate(); !st.ok()) return st;
  if (ctx_.read_only) {
    Result<bool> exists = env::Exists(ctx_.root);
    if (!exists.ok()) return exists.status();
    if (!*exists) return Status::NotFound("no data directory " + ctx_.root);
    // Is a writer live? Its OFD lock on comet.lock says so exactly.
    Result<int> fd = env::OpenFile(env::Join(ctx_.root, kLockFile), O_RDONLY);
    if (fd.ok()) {
      struct flock fl {};
      fl.l_type = F_RDLCK;
      fl.l_whence = SEEK_SET;
      if (fcntl(*fd, F_OFD_GETLK, &fl) == 0) ctx_.writer_live = fl.l_type != F_UNLCK;
      env::Close(*fd);
    }
    Result<std::unique_ptr<shm::ControlRegion>> c = shm::ControlRegion::OpenReader(ctx_.root);
    if (c.ok()) {
      control_ = std::move(*c);
    } else if (c.status().code() == Code::kVersion) {
      return c.status();
    }
  } else {
    if (Status st = env::MkdirAll(ctx_.root); !st.ok()) return st;
    if (Status st = ClaimWriter(); !st.ok()) return st;
    std::string note;
    Result<std::unique_ptr<shm::ControlRegion>> c = shm::ControlRegion::OpenWriter(
        ctx_.root, ctx_.cfg.storage.max_streams, 64, &note);
    if (!c.ok()) return c.status();
    control_ = std::move(*c);
    if (!note.empty()) report_.push_back(note);
    if (Status st = env::MkdirAll(env::Join(ctx_.root, kStreamsDir)); !st.ok()) return st;
  }
  ctx_.control = control_.get();
  if (Status st = LoadPrefixes(); !st.ok()) return st;
  if (!ctx_.read_only) {
    maintainer_thread_ = std::thread([this] { MaintainerLoop(); });
    if (ctx_.cfg.sync.mode == SyncMode::kInterval) {
      syncer_thread_ = std::thread([this] { SyncerLoop(); });
    }
  }
  return Status::Ok();
}

// Reads DIR/streams/<id>/PREFIX for every prefix and loads every shard found.
Status ClientImpl::LoadPrefixes() {
  std::string streams = env::Join(ctx_.root, kStreamsDir);
  Result<std::vector<std::string>> ids = env::ListDir(streams);
  if (!ids.ok()) return ids.status().IsNotFound() ? Status::Ok() : ids.status();
  std::sort(ids->begin(), ids->end());
  for (const std::string& id_text : *ids) {
    uint32_t id;
    if (!ParseHex(id_text, 8, &id)) {
      if (!ctx_.read_only && id_text.starts_with(".new-")) {
        std::string p = env::Join(streams, id_text);
        (void)env::Unlink(env::Join(p, kPrefixFile));
        rmdir(p.c_str());
      }
      continue;
    }
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
      Result<std::shared_ptr<Shard>> s = LoadShard(id, prefix, shard);
      if (!s.ok()) return s.status();
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<Shard>> ClientImpl::LoadShard(uint32_t prefix_id, const std::string& prefix,
                                                     uint32_t shard) {
  auto s = std::make_shared<Shard>(&ctx_, prefix_id, prefix, shard);
  if (Status st = s->Load(&report_); !st.ok()) return st;
  std::unique_ptr<Stream> handle(new Stream(s));
  std::unique_lock lk(streams_mu_);
  streams_[s->name()] = std::move(handle);
  return s;
}

// Gives a new prefix the next id: a temporary directory holding its PREFIX file is renamed into
// place, so a crash never leaves an id without its name.
Result<uint32_t> ClientImpl::RegisterPrefix(const std::string& prefix) {
  auto it = prefix_ids_.find(prefix);
  if (it != prefix_ids_.end()) return it->second;
  std::string streams = env::Join(ctx_.root, kStreamsDir);
  std::string tmp = env::Join(streams, ".new-" + std::to_string(getpid()));
  if (Status st = env::MkdirAll(tmp); !st.ok()) return st;
  Status st = env::WriteFile(env::Join(tmp, kPrefixFile), prefix.data(), prefix.size(), true);
  if (!st.ok()) return st;
  for (;;) {
    uint32_t id = next_prefix_id_++;
    std::string final_dir = env::Join(streams, Hex8(id));
    if (rename(tmp.c_str(), final_dir.c_str()) == 0) {
      if (Status s2 = env::FsyncDir(streams); !s2.ok()) return s2;
      prefix_ids_[prefix] = id;
      return id;
    }
    if (errno != EEXIST && errno != ENOTEMPTY) {
      return Status::FromErrno(errno, "rename " + tmp + " -> " + final_dir);
    }
  }
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
  return Status::NotFound("no stream " + std::string(name) + " in " + ctx_.root);
}

Result<Stream*> ClientImpl::GetStream(std::string_view name) {
  Result<Stream*> found = FindStream(name);
  if (found.ok() || !found.status().IsNotFound() || ctx_.read_only) return found;
  Result<StreamName> parsed = ParseStreamName(name);
  if (!parsed.ok()) return parsed.status();
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

void ClientImpl::MaintainerLoop() {
  while (!stop_.load(std::memory_order_acquire)) {
    for (auto& s : AllShards()) s->Maintain();
    maintainer_.Wait(100'000'000);
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
  stop_.store(true, std::memory_order_release);
  maintainer_.Notify();
  syncer_.Notify();
  if (maintainer_thread_.joinable()) maintainer_thread_.join();
  if (syncer_thread_.joinable()) syncer_thread_.join();
  Status first;
  for (auto& s : AllShards()) {
    Status st = s->Close();
    if (first.ok() && !st.ok()) first = st;
  }
  if (lock_fd_ >= 0) {
    env::Close(lock_fd_);  // releases the writer claim
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
  return s->shard_->Append(entries, ids_out);
}

Status Client::Append(std::string_view stream, std::span<const std::string_view> entries,
                      EntryId* ids_out) {
  Result<Stream*> s = impl_->GetStream(stream);
  if (!s.ok()) return s.status();
  return (*s)->shard_->Append(entries, ids_out);
}

Status Client::Sync() {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  return impl_->SyncAll();
}

Status Client::Read(Stream* s, uint64_t entry, Entry* out) {
  if (Status st = impl_->CheckOpen(); !st.ok()) return st;
  if (!s) return Status::Invalid("null stream handle");
  return s->shard_->Read(entry, out);
}

Status Client::Read(std::string_view stream, uint64_t entry, Entry* out) {
  Result<Stream*> s = impl_->FindStream(stream);
  if (!s.ok()) return s.status();
  return (*s)->shard_->Read(entry, out);
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
