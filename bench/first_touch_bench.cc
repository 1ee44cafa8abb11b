// Where a fresh page of a segment costs its writer time: the probe behind the pre-fault design.
//
//   BM_Probe_FirstTouch  per 4 KiB page of a 16 MiB fallocated file under /tmp, the cost of:
//     write(2) of 4 KiB into an O_APPEND file (the kernel copies through its own mapping),
//     MADV_POPULATE_WRITE of a shared mapping, then the first store into each page and a second,
//     a first load instead of a store, a store after the kernel wrote the page with pwrite(2),
//     an atomic add of zero (a write that changes no data) and a store after it,
//     the same populate through a 2 MiB-aligned mapping with MADV_HUGEPAGE and a store after it,
//     recycling: a store through the same mapping after write-back, a second mapping of the
//     same cached pages (populate, first store), posix_fadvise(DONTNEED) of the written-back
//     pages and a fresh file populated right after it, a store after the same mapping's entries
//     were zapped (MADV_DONTNEED) and populated again,
//     and the first store into fresh anonymous memory.
//
// On a VM whose hypervisor shadows the guest's page tables, the first access through each new
// page-table entry of a process costs a trip to the hypervisor whatever the page holds: a load
// pays it as a store does, a page the kernel has just written pays it, a second mapping of
// cached pages pays it again, and a page mapped by one 2 MiB entry pays it once for 512 pages.
// getrusage counts no fault for it. On bare metal and hardware-assisted paging each of these
// figures is a few tens of nanoseconds except populate and write(2). Where the guest hands its
// free memory back to the host (free page reporting, ballooning), populate and write(2) of a
// fresh page cost microseconds instead: the kernel's zeroing (or copy) is the first write to a
// guest page the host must back again, which the recycling cases, on pages still cached, avoid.
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

#include "common.h"
#include "env.h"

namespace comet_bench {
namespace {

constexpr size_t kProbeBytes = 16u << 20, kPage = 4096, kProbePages = kProbeBytes / kPage;

inline uint64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1'000'000'000 + uint64_t(t.tv_nsec);
}

// A fallocated file and a shared writable mapping of it (2 MiB entries where the kernel can,
// with `huge`), removed on destruction.
class ProbeFile {
 public:
  ProbeFile(const TempDir& dir, bool huge) : path_(dir.Sub("probe.dat")) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0 || fallocate(fd_, 0, 0, kProbeBytes) != 0) return;
    // The library's own mapping, as a segment gets it.
    comet::Result<char*> m = comet::env::Map(fd_, kProbeBytes, true, path_, huge);
    if (m.ok()) map_ = *m;
  }
  ~ProbeFile() {
    if (map_) munmap(map_, kProbeBytes);
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool ok() const { return map_ != nullptr; }
  char* map() const { return map_; }
  int fd() const { return fd_; }
  bool Populate() const { return madvise(map_, kProbeBytes, MADV_POPULATE_WRITE) == 0; }

 private:
  std::string path_;
  int fd_ = -1;
  char* map_ = nullptr;
};

// Runs fn(page address) over every page and returns ns per page.
template <class Fn>
double PerPage(char* base, Fn fn) {
  uint64_t t0 = NowNs();
  for (size_t p = 0; p < kProbePages; p++) fn(base + p * kPage);
  return double(NowNs() - t0) / double(kProbePages);
}

void BM_Probe_FirstTouch(benchmark::State& state, const std::string& bench) {
  TempDir dir;
  if (!dir.ok()) state.SkipWithError("mkdtemp failed");
  std::map<std::string, double> ns;
  bool failed = !dir.ok();
  auto fail = [&](const char* what) {
    if (!failed) state.SkipWithError(what);
    failed = true;
  };
  for (auto _ : state) {
    if (failed) continue;
    {  // write(2) of fresh pages
      int fd = ::open(dir.Sub("write2.dat").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
      std::vector<char> page(kPage, 'x');
      ns["write2"] = PerPage(nullptr, [&](char*) {
        if (::write(fd, page.data(), kPage) != ssize_t(kPage)) fail("write(2) failed");
      });
      ::close(fd);
      ::unlink(dir.Sub("write2.dat").c_str());
    }
    {  // populate, then first and second store
      ProbeFile f(dir, false);
      if (!f.ok()) fail("probe file");
      if (failed) continue;
      uint64_t t0 = NowNs();
      if (!f.Populate()) fail("MADV_POPULATE_WRITE failed");
      ns["populate"] = double(NowNs() - t0) / double(kProbePages);
      ns["store_first"] = PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
      ns["store_second"] = PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 16) = 1; });
    }
    {  // populate, then a load first
      ProbeFile f(dir, false);
      if (!f.ok() || !f.Populate()) fail("probe file");
      if (failed) continue;
      ns["load_first"] = PerPage(f.map(), [](char* p) { (void)*reinterpret_cast<volatile char*>(p); });
    }
    {  // populate, the kernel writes each page (pwrite), then a store
      ProbeFile f(dir, false);
      if (!f.ok() || !f.Populate()) fail("probe file");
      if (failed) continue;
      char z[8] = {};
      for (size_t p = 0; p < kProbePages; p++) {
        if (::pwrite(f.fd(), z, sizeof z, off_t(p * kPage)) != ssize_t(sizeof z)) fail("pwrite");
      }
      ns["store_after_pwrite"] = PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
    }
    {  // populate, touch (atomic add of zero), then a store
      ProbeFile f(dir, false);
      if (!f.ok() || !f.Populate()) fail("probe file");
      if (failed) continue;
      ns["touch"] = PerPage(f.map(), [](char* p) {
        __atomic_fetch_add(reinterpret_cast<uint64_t*>(p), 0, __ATOMIC_RELAXED);
      });
      ns["store_after_touch"] = PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
    }
    {  // 2 MiB mapping entries
      ProbeFile f(dir, true);
      if (!f.ok()) fail("probe file");
      if (failed) continue;
      uint64_t t0 = NowNs();
      if (!f.Populate()) fail("MADV_POPULATE_WRITE failed");
      ns["populate_huge"] = double(NowNs() - t0) / double(kProbePages);
      ns["store_after_populate_huge"] = PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
    }
    {  // recycling: the same file's cached, written-back pages in a new mapping
      ProbeFile f(dir, false);
      if (!f.ok() || !f.Populate()) fail("probe file");
      if (failed) continue;
      PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
      if (fdatasync(f.fd()) != 0) fail("fdatasync");
      // The same mapping after write-back: the kernel write-protected each page's entry.
      ns["store_same_map_after_sync"] =
          PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 16) = 2; });
      if (fdatasync(f.fd()) != 0) fail("fdatasync");
      comet::Result<char*> m = comet::env::Map(f.fd(), kProbeBytes, true, "probe", false);
      if (!m.ok()) fail("second mapping");
      if (failed) continue;
      uint64_t t0 = NowNs();
      if (madvise(*m, kProbeBytes, MADV_POPULATE_WRITE) != 0) fail("MADV_POPULATE_WRITE failed");
      ns["populate_recycled"] = double(NowNs() - t0) / double(kProbePages);
      ns["store_recycled_after_populate"] =
          PerPage(*m, [](char* p) { *reinterpret_cast<volatile char*>(p + 24) = 3; });
      munmap(*m, kProbeBytes);
      // Dropping the written-back pages from the page cache (what a sealed, synced segment
      // could do), then populating a fresh file: does the freed memory come back cheaper?
      if (fdatasync(f.fd()) != 0) fail("fdatasync");
      t0 = NowNs();
      if (posix_fadvise(f.fd(), 0, kProbeBytes, POSIX_FADV_DONTNEED) != 0) fail("fadvise");
      ns["fadvise_dontneed"] = double(NowNs() - t0) / double(kProbePages);
    }
    {  // a fresh file right after the pages above were dropped
      ProbeFile f(dir, false);
      if (!f.ok()) fail("probe file");
      if (failed) continue;
      uint64_t t0 = NowNs();
      if (!f.Populate()) fail("MADV_POPULATE_WRITE failed");
      ns["populate_after_dontneed"] = double(NowNs() - t0) / double(kProbePages);
      ns["store_after_populate_after_dontneed"] =
          PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
    }
    {  // the same mapping, entries zapped (MADV_DONTNEED) and populated again: is it the new
       // entry, not the new page, that costs?
      ProbeFile f(dir, false);
      if (!f.ok() || !f.Populate()) fail("probe file");
      if (failed) continue;
      PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 8) = 1; });
      if (madvise(f.map(), kProbeBytes, MADV_DONTNEED) != 0 || !f.Populate()) fail("re-populate");
      ns["store_after_zap_and_repopulate"] =
          PerPage(f.map(), [](char* p) { *reinterpret_cast<volatile char*>(p + 16) = 2; });
    }
    {  // fresh anonymous memory
      char* a = static_cast<char*>(
          mmap(nullptr, kProbeBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (a == MAP_FAILED) {
        fail("mmap");
        continue;
      }
      ns["anon_first"] = PerPage(a, [](char* p) { *reinterpret_cast<volatile char*>(p) = 1; });
      munmap(a, kProbeBytes);
    }
  }
  if (failed) return;
  for (const auto& [k, v] : ns) {
    state.counters[k + "_ns"] = v;
    SetFigure("probe.page." + k, v, bench, state.iterations());
  }
}

}  // namespace

void RegisterFirstTouchBenchmarks() {
  RegisterNamed("BM_Probe_FirstTouch", BM_Probe_FirstTouch)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace comet_bench
