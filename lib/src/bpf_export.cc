#include "bpf_export.h"

#include <linux/bpf.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"

namespace comet::internal {
namespace {

std::string PinPath(const std::string& dir) { return dir + "/" + COMET_EXPORT_MAP; }

}  // namespace

std::unique_ptr<ExportMap> ExportMap::Open(const std::string& pin_dir) {
  if (pin_dir.empty()) return nullptr;
  const std::string path = PinPath(pin_dir);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return nullptr;
  Result<int> fd = env::BpfObjGet(path);
  if (!fd.ok()) return nullptr;
  std::unique_ptr<ExportMap> m;
  Result<env::BpfMapInfo> info = env::GetBpfMapInfo(*fd, path);
  if (info.ok() && info->type == BPF_MAP_TYPE_ARRAY && info->max_entries == 1 &&
      info->value_size == sizeof(comet_export) && (info->flags & BPF_F_MMAPABLE)) {
    const size_t len = (sizeof(comet_export) + 4095) & ~size_t{4095};
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (p != MAP_FAILED) {
      auto* x = static_cast<comet_export*>(p);
      if (__atomic_load_n(&x->magic, __ATOMIC_ACQUIRE) == COMET_EXPORT_MAGIC &&
          x->version == COMET_ABI_VERSION && x->ops == COMET_EXPORT_OPS) {
        m.reset(new ExportMap());
        m->map_ = x;
        m->len_ = len;
        m->dev_ = st.st_dev;
        m->ino_ = st.st_ino;
        __atomic_fetch_add(&x->attached, 1, __ATOMIC_RELAXED);
      } else {
        munmap(p, len);
      }
    }
  }
  close(*fd);
  return m;
}

ExportMap::~ExportMap() {
  if (map_) munmap(map_, len_);
}

bool ExportMap::StillPinned(const std::string& pin_dir) const {
  struct stat st;
  return stat(PinPath(pin_dir).c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

}  // namespace comet::internal
