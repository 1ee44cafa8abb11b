// Retention: one pass over a data directory that deletes whole segment files, oldest first per
// shard, never a shard's last (active) segment, by age, per-shard and total size and a free-disk
// floor, protecting what consumer groups have not consumed yet unless force_delete_after or a
// budget overrules them.
//
// The pass works from the files on disk and the control region only, so it deletes shards that
// other processes write just as well as this process's own; the caller makes it the only pass
// running in the directory (an OFD lock, see ClientImpl::RunRetention).
//
// Crash consistency: a shard loses segments only from its front, one at a time, and the first
// retained entry is the base of its first remaining segment, so a pass cut short at any instant
// leaves dense numbering from a reported start, never a gap. Before a segment file goes, the
// shard slot's retained_from is raised to the next segment's base so that live processes answer
// NOT_FOUND for its entries at once; a pass finding retained_from above a remaining segment
// (a crash between the two) completes that deletion first. A writer that finishes a sealed
// segment while a pass deletes it removes the index file it wrote once it sees retained_from
// past the segment (Shard::FinishSealed), and the pass removes one written before that.
#pragma once

#include <cstdint>
#include <string>

#include "comet/client.h"
#include "comet/config.h"

namespace comet::shm {
class ControlRegion;
}

namespace comet::internal {

// Runs one pass at wall-clock time `now_ns`. REQUIRES: no other pass runs in the directory.
Result<RetentionReport> RunRetentionPass(const std::string& root, const Config& cfg,
                                         shm::ControlRegion* control, int64_t now_ns);

// Whether any retention limit is set (otherwise there is nothing to run).
bool RetentionEnabled(const Config::Retention& r);

}  // namespace comet::internal
