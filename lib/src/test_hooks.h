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

// The wall clock retention passes judge ages by: `ns` from now on (0: the real clock again).
// Lets a test place "now" between segments' creation times instead of waiting for time to pass.
void SetRetentionNowNs(int64_t ns);
int64_t RetentionNowNs();

// Called by a retention pass for each segment it deletes, after raising the shard's
// retained_from and before unlinking the file, with how many it deleted before (null: nothing).
// A crash test uses it to place a SIGKILL in the middle of a pass.
void SetRetentionDeleteHook(void (*hook)(uint64_t deleted));

// Called by a writer just before it writes the index file of the sealed segment starting at
// entry `base` (null: nothing). A test runs a retention pass there.
void SetIndexWriteHook(void (*hook)(uint64_t base));

}  // namespace comet::internal
