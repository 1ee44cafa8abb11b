#include "real.h"

#include <dlfcn.h>

namespace comet_preload {

RealFunctions real;

void* ResolveOne(const char* name) { return dlsym(RTLD_NEXT, name); }

void ResolveReal() {
#define COMET_PRELOAD_RESOLVE(name, ret, params) \
  real.name##_ = reinterpret_cast<name##_fn>(ResolveOne(#name));
  COMET_PRELOAD_REAL_FUNCTIONS(COMET_PRELOAD_RESOLVE)
#undef COMET_PRELOAD_RESOLVE
}

}  // namespace comet_preload
