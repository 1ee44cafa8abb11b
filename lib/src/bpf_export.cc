#include "bpf_export.h"

#include <linux/bpf.h>

#include "env.h"

namespace comet::internal {
namespace {

std::string PinPath(const std::string& dir) { return dir + "/" + COMET_EXPORT_MAP; }

}  // namespace

std::unique_ptr<ExportMap> ExportMap::Open(const std::string& pin_dir) {
  if (pin_dir.empty()) return nullptr;
  const std::string path = PinPath(pin_dir);
  Result<env::FileId> id = env::GetFileId(path);
  if (!id.ok()) return nullptr;
  Result<int> fd = env::BpfObjGet(path);
  if (!fd.ok()) return nullptr;
  std::unique_ptr<ExportMap> m;
  Result<env::BpfMapInfo> info = env::GetBpfMapInfo(*fd, path);
  if (info.ok() && info->type == BPF_MAP_TYPE_ARRAY && info->max_entries == 1 &&
      info->value_size == sizeof(comet_export) && (info->flags & BPF_F_MMAPABLE)) {
    const size_t len = env::AlignUp(sizeof(comet_export), env::kPageSize);
    Result<char*> p = env::Map(*fd, len, true, path);
    if (p.ok()) {
      auto* x = reinterpret_cast<comet_export*>(*p);
      if (__atomic_load_n(&x->magic, __ATOMIC_ACQUIRE) == COMET_EXPORT_MAGIC &&
          x->version == COMET_ABI_VERSION && x->ops == COMET_EXPORT_OPS) {
        m.reset(new ExportMap());
        m->map_ = x;
        m->len_ = len;
        m->id_ = *id;
        __atomic_fetch_add(&x->attached, 1, __ATOMIC_RELAXED);
      } else {
        env::Unmap(*p, len);
      }
    }
  }
  env::Close(*fd);
  return m;
}

ExportMap::~ExportMap() {
  if (map_) env::Unmap(reinterpret_cast<char*>(map_), len_);
}

bool ExportMap::StillPinned(const std::string& pin_dir) const {
  Result<env::FileId> id = env::GetFileId(PinPath(pin_dir));
  return id.ok() && *id == id_;
}

}  // namespace comet::internal
