// Knobs that tests turn to make a missing mechanism visible. Internal: not part of the public
// API, and the defaults are what production runs with.
#pragma once

#include <cstdint>

namespace comet::internal {

// How often a reader blocked in WaitFor re-checks its stream without being woken: a safety net
// only, since every append wakes announced waiters (default 10 ms). Raising it makes a lost
// wake-up show as a late one. Read-only clients cannot announce themselves and poll every
// millisecond regardless.
void SetWaitRecheckNs(int64_t ns);
int64_t WaitRecheckNs();

}  // namespace comet::internal
