// The loader of comet.bpf.c: privileges and pin directory first, then open -> configure ->
// replace stale pins -> load -> initialise the export map -> attach. Everything done is undone
// by ~Probe: links destroyed (the kernel detaches the uprobes and lowers the semaphores), maps
// unpinned unless `keep`, the pin directory removed if this run created it.
#include "probe.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "comet.skel.h"

namespace comet::bpf {
namespace {

const char* const kOpNames[COMET_OP_COUNT] = {"append",   "sync",     "commit", "rotate",
                                              "prealloc", "prefault", "read",   "wait",
                                              "takeover", "rebalance", "recovery"};
const char* const kKernelOpNames[COMET_K_COUNT] = {"fdatasync", "fsync", "msync", "wake_to_run"};

// libbpf's messages, kept so that a failure can quote them; printed only with COMET_BPF_DEBUG.
std::mutex g_log_mu;
std::string g_log;

int LogLibbpf(enum libbpf_print_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (std::getenv("COMET_BPF_DEBUG")) std::fputs(buf, stderr);
  if (level == LIBBPF_DEBUG) return 0;
  std::lock_guard lk(g_log_mu);
  g_log += buf;
  if (g_log.size() > 16384) g_log.erase(0, g_log.size() - 16384);
  return 0;
}

// The last lines libbpf printed, for an error message.
std::string LibbpfSays() {
  std::lock_guard lk(g_log_mu);
  std::string s = g_log;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  size_t start = s.size(), lines = 0;
  while (start > 0 && lines < 6) {
    start = s.rfind('\n', start - 1);
    if (start == std::string::npos) { start = 0; break; }
    lines++;
  }
  s = s.substr(start);
  return s.empty() ? "" : "; libbpf says:\n" + s;
}

Status Errno(int err, const std::string& what) {
  return Status::FromErrno(err, what);
}

// Root, or the capabilities loading and attaching need (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN for
// uprobes on other processes' files).
bool Privileged() {
  if (geteuid() == 0) return true;
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1; };
  return has(CAP_SYS_ADMIN) || (has(39 /* CAP_BPF */) && has(38 /* CAP_PERFMON */));
}

// The nearest existing ancestor of path (path itself if it exists).
std::string ExistingAncestor(std::string path) {
  struct stat st;
  while (!path.empty() && stat(path.c_str(), &st) != 0) {
    size_t slash = path.find_last_of('/');
    path = slash == 0 ? "/" : slash == std::string::npos ? "." : path.substr(0, slash);
  }
  return path;
}

bool OnBpfFs(const std::string& path) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC;
}

std::string RealPath(const std::string& p) {
  std::error_code ec;
  auto r = std::filesystem::canonical(p, ec);
  return ec ? p : r.string();
}

// Files named libcomet.so* that `pid` maps (every process when pid is 0).
std::vector<std::string> MappedLibraries(int pid) {
  std::set<std::string> found;
  auto scan = [&](const std::string& maps) {
    std::ifstream in(maps);
    std::string line;
    while (std::getline(in, line)) {
      size_t slash = line.find('/');
      if (slash == std::string::npos || line.ends_with(" (deleted)")) continue;
      std::string path = line.substr(slash);
      std::string base = path.substr(path.find_last_of('/') + 1);
      if (base.starts_with("libcomet.so")) found.insert(RealPath(path));
    }
  };
  if (pid > 0) {
    scan("/proc/" + std::to_string(pid) + "/maps");
  } else {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
        scan(e.path().string() + "/maps");
      }
    }
  }
  return {found.begin(), found.end()};
}


}  // namespace

bool HasCometProbes(const std::string& path) {
  // The provider and a probe name as a stapsdt note spells them: cheap and good enough to choose
  // targets; libbpf parses the notes properly when attaching.
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return data.find(std::string("stapsdt\0", 8)) != std::string::npos &&
         data.find(std::string("comet\0append_start\0", 19)) != std::string::npos;
}

struct Probe::Skeleton {
  comet_bpf* obj = nullptr;
  std::vector<bpf_link*> links;
  ~Skeleton() {
    for (bpf_link* l : links) bpf_link__destroy(l);
    comet_bpf__destroy(obj);
  }
};

const char* OpName(uint32_t op) { return op < COMET_OP_COUNT ? kOpNames[op] : "unknown"; }
const char* KernelOpName(uint32_t op) {
  return op < COMET_K_COUNT ? kKernelOpNames[op] : "unknown";
}

Probe::Probe(ProbeOptions opts) : opts_(std::move(opts)) {}

Probe::~Probe() {
  if (skel_) {
    for (bpf_link* l : skel_->links) bpf_link__destroy(l);
    skel_->links.clear();
    if (!opts_.keep) Unpin();
  }
  skel_.reset();
  if (pin_lock_fd_ >= 0) close(pin_lock_fd_);
  if (!opts_.keep) {
    for (const std::string& d : created_dirs_) rmdir(d.c_str());
  }
}

void Probe::Unpin() {
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj->obj) {
    if (bpf_map__is_pinned(m)) (void)bpf_map__unpin(m, nullptr);
  }
}

Result<std::unique_ptr<Probe>> Probe::Start(const ProbeOptions& opts,
                                            std::vector<std::string>* notes) {
  libbpf_set_print(LogLibbpf);
  if (!Privileged()) {
    return Status::Invalid(
        "comet probe needs root (or CAP_BPF and CAP_PERFMON, and CAP_SYS_ADMIN for other "
        "users' processes) to load BPF programs; run it with sudo");
  }
  std::unique_ptr<Probe> p(new Probe(opts));
  Status st = p->PreparePinDir(notes);
  if (st.ok()) st = p->Load(notes);
  if (st.ok()) st = p->InitExport();
  if (st.ok() && opts.attach) st = p->AttachUsdt(notes);
  if (!st.ok()) {
    p->opts_.keep = false;  // a failed start leaves nothing behind
    return st;
  }
  if (opts.attach) p->AttachKernelSide(notes);
  return p;
}

Status Probe::PreparePinDir(std::vector<std::string>* notes) {
  std::string& dir = opts_.pin_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return Status::Invalid("--pin: empty directory");
  const std::string anc = ExistingAncestor(dir);
  if (!OnBpfFs(anc)) {
    return Status::Invalid(
        "cannot pin maps in " + dir + ": " + anc + " is not on a BPF filesystem (bpffs). Mount "
        "one with: mount -t bpf bpf /sys/fs/bpf (or choose --pin under a mounted bpffs)");
  }
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::Invalid(dir + " exists and is not a directory");
  } else {
    for (std::string d = dir; d != anc && d.size() > anc.size(); d = d.substr(0, d.rfind('/'))) {
      created_dirs_.push_back(d);  // deepest first, for removal
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::Io("creating pin directory " + dir + ": " + ec.message());
    notes->push_back("created pin directory " + dir);
  }
  pin_lock_fd_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pin_lock_fd_ < 0) return Errno(errno, "opening pin directory " + dir);
  if (flock(pin_lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::NotOwner("another comet probe is using " + dir +
                              "; stop it, or give this one its own --pin directory");
    }
    return Errno(errno, "locking pin directory " + dir);
  }
  return Status::Ok();
}

// A pinned map that libbpf would refuse to reuse (another type, key or value size, capacity or
// flags: an older layout, or something else entirely) is removed, so that the load pins a new
// one. A pin libbpf can reuse is kept: its counts go on.
Status Probe::ReplaceStalePins(std::vector<std::string>* notes) {
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj->obj) {
    const char* path = bpf_map__pin_path(m);
    if (!path || access(path, F_OK) != 0) continue;
    int fd = bpf_obj_get(path);
    bpf_map_info info{};
    __u32 len = sizeof info;
    std::string why;
    if (fd < 0) {
      why = "it cannot be opened (" + std::string(std::strerror(errno)) + ")";
    } else if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
      why = "it is not a map";
    } else if (info.type != bpf_map__type(m) || info.key_size != bpf_map__key_size(m) ||
               info.value_size != bpf_map__value_size(m) ||
               info.max_entries != bpf_map__max_entries(m) ||
               info.map_flags != bpf_map__map_flags(m)) {
      why = "its layout is another version's (value " + std::to_string(info.value_size) +
            " bytes, " + std::to_string(info.max_entries) + " entries; this build: " +
            std::to_string(bpf_map__value_size(m)) + " bytes, " +
            std::to_string(bpf_map__max_entries(m)) + " entries)";
    }
    if (fd >= 0) close(fd);
    if (why.empty()) continue;
    if (unlink(path) != 0) return Errno(errno, "removing stale pin " + std::string(path));
    notes->push_back("replaced " + std::string(path) + ": " + why);
  }
  return Status::Ok();
}

Status Probe::Load(std::vector<std::string>* notes) {
  LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = opts_.pin_dir.c_str());
  skel_ = std::make_unique<Skeleton>();
  skel_->obj = comet_bpf__open_opts(&oo);
  if (!skel_->obj) {
    return Errno(errno, "opening the BPF object");
  }
  skel_->obj->rodata->targ_tgid = static_cast<__u32>(opts_.pid);
  skel_->obj->rodata->filter_cgroup = !opts_.cgroup.empty();
  if (Status st = ReplaceStalePins(notes); !st.ok()) return st;
  if (int err = comet_bpf__load(skel_->obj); err != 0) {
    return Status::Invalid("the BPF programs did not load on this kernel (" +
                           std::string(std::strerror(-err)) +
                           "); it needs BPF, BTF (/sys/kernel/btf/vmlinux), uprobes and raw "
                           "tracepoints" + LibbpfSays());
  }
  if (!opts_.cgroup.empty()) {
    int cg = open(opts_.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) return Errno(errno, "--cgroup " + opts_.cgroup);
    __u32 zero = 0;
    int err = bpf_map_update_elem(bpf_map__fd(skel_->obj->maps.cgroup_filter), &zero, &cg, BPF_ANY);
    close(cg);
    if (err != 0) return Errno(errno, "--cgroup " + opts_.cgroup + " (a cgroup v2 directory?)");
  }
  return Status::Ok();
}

// Writes the export map's header once, so that libraries start adding to it. A reused map that
// already has it keeps its counts.
Status Probe::InitExport() {
  int fd = bpf_map__fd(skel_->obj->maps.comet_export);
  __u32 zero = 0;
  comet_export v{};
  if (bpf_map_lookup_elem(fd, &zero, &v) != 0) return Errno(errno, "reading comet_export");
  if (v.magic == COMET_EXPORT_MAGIC && v.version == COMET_ABI_VERSION) return Status::Ok();
  v = comet_export{};
  v.magic = COMET_EXPORT_MAGIC;
  v.version = COMET_ABI_VERSION;
  v.ops = COMET_EXPORT_OPS;
  if (bpf_map_update_elem(fd, &zero, &v, BPF_ANY) != 0) return Errno(errno, "writing comet_export");
  return Status::Ok();
}

void Probe::AttachKernelSide(std::vector<std::string>* notes) {
  struct {
    bpf_program* prog;
    const char* what;
  } progs[] = {
      {skel_->obj->progs.sys_enter, "sync-family system calls (raw_tp/sys_enter)"},
      {skel_->obj->progs.sys_exit, "sync-family system calls (raw_tp/sys_exit)"},
      {skel_->obj->progs.page_fault_user, "page faults (exceptions:page_fault_user)"},
      {skel_->obj->progs.sched_wakeup, "reader wake-ups (sched:sched_wakeup)"},
      {skel_->obj->progs.sched_switch, "reader wake-ups (sched:sched_switch)"},
  };
  for (auto& p : progs) {
    bpf_link* l = bpf_program__attach(p.prog);
    if (!l) {
      notes->push_back(std::string("kernel-side ") + p.what + " not attached: " +
                       std::strerror(errno));
      continue;
    }
    skel_->links.push_back(l);
  }
}

Status Probe::AttachUsdt(std::vector<std::string>* notes) {
  std::vector<std::string> candidates;
  for (const std::string& t : opts_.targets) candidates.push_back(RealPath(t));
  if (candidates.empty()) {
    candidates = MappedLibraries(opts_.pid);
    if (opts_.pid > 0) {
      candidates.push_back(RealPath("/proc/" + std::to_string(opts_.pid) + "/exe"));
    } else {
      char self[4096];
      ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
      if (n > 0) {
        std::string exe(self, static_cast<size_t>(n));
        std::string beside = exe.substr(0, exe.find_last_of('/')) + "/../lib/libcomet.so";
        if (access(beside.c_str(), R_OK) == 0) candidates.push_back(RealPath(beside));
      }
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  }
  for (const std::string& path : candidates) {
    if (access(path.c_str(), R_OK) != 0) {
      if (!opts_.targets.empty()) return Errno(errno, "--lib " + path);
      continue;
    }
    if (!HasCometProbes(path)) {
      if (!opts_.targets.empty()) {
        return Status::Invalid(path + " has no comet USDT probes (not libcomet.so, nor a "
                               "program linking the library statically)");
      }
      continue;
    }
    size_t before = skel_->links.size();
    for (uint32_t op = 0; op < COMET_OP_COUNT; op++) {
      for (bool done : {false, true}) {
        const std::string name = std::string(kOpNames[op]) + (done ? "_done" : "_start");
        LIBBPF_OPTS(bpf_usdt_opts, uo, .usdt_cookie = op);
        bpf_program* prog = done ? skel_->obj->progs.op_done : skel_->obj->progs.op_start;
        bpf_link* l = bpf_program__attach_usdt(prog, opts_.pid > 0 ? opts_.pid : -1,
                                               path.c_str(), "comet", name.c_str(), &uo);
        if (!l) {
          const int err = errno;
          return Status::Invalid("attaching to USDT probe comet:" + name + " in " + path + ": " +
                                 std::strerror(err) + LibbpfSays());
        }
        skel_->links.push_back(l);
      }
    }
    usdt_links_ += skel_->links.size() - before;
    targets_.push_back(path);
  }
  if (targets_.empty()) {
    if (opts_.pid > 0) {
      return Status::NotFound("process " + std::to_string(opts_.pid) +
                              " has no comet USDT probes (neither its executable nor a "
                              "libcomet.so it maps); is it running and using Comet?");
    }
    return Status::NotFound("no libcomet.so to attach to: none beside this comet tool and none "
                            "mapped by a running process; name one with --lib PATH, or a "
                            "process with --pid PID");
  }
  for (const std::string& t : targets_) notes->push_back("attached to " + t);
  return Status::Ok();
}

Status Probe::Read(Snapshot* out) const {
  *out = Snapshot{};
  comet_bpf* o = skel_->obj;
  int ops = bpf_map__fd(o->maps.comet_ops), kernel = bpf_map__fd(o->maps.comet_kernel);
  for (__u32 i = 0; i < COMET_OP_COUNT; i++) {
    if (bpf_map_lookup_elem(ops, &i, &out->ops[i]) != 0) return Errno(errno, "reading comet_ops");
  }
  for (__u32 i = 0; i < COMET_K_COUNT; i++) {
    if (bpf_map_lookup_elem(kernel, &i, &out->kernel[i]) != 0) {
      return Errno(errno, "reading comet_kernel");
    }
  }
  int shards = bpf_map__fd(o->maps.comet_shard_ops);
  comet_shard_key key{}, next{};
  const comet_shard_key* prev = nullptr;
  while (bpf_map_get_next_key(shards, prev, &next) == 0) {
    comet_hist h;
    if (bpf_map_lookup_elem(shards, &next, &h) == 0) out->shards.emplace_back(next, h);
    key = next;
    prev = &key;
  }
  std::sort(out->shards.begin(), out->shards.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.op, a.first.prefix_id, a.first.shard) <
           std::tie(b.first.op, b.first.prefix_id, b.first.shard);
  });
  int faults = bpf_map__fd(o->maps.comet_faults);
  __u32 pid = 0, npid = 0;
  const __u32* pp = nullptr;
  while (bpf_map_get_next_key(faults, pp, &npid) == 0) {
    comet_faults f;
    if (bpf_map_lookup_elem(faults, &npid, &f) == 0) out->faults.emplace_back(npid, f);
    pid = npid;
    pp = &pid;
  }
  std::sort(out->faults.begin(), out->faults.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return Status::Ok();
}

}  // namespace comet::bpf
