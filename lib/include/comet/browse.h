// Browsing: looking at streams and at consumer groups' positions without touching any offset.
//
//  - ReadLast: the last n entries of a stream (what `comet tail` prints).
//  - Client::Scan(stream, entry): a scan from an id, in entry order (comet/client.h).
//  - TimeSpan: the timestamps of a stream's oldest and newest readable entries.
//  - Lag per group and stream: ReadStats(dir).groups (comet/stats.h), read from the control
//    region without joining any group (what `comet groups` prints).
// None of these joins a group, commits, or changes what a consumer delivers next. They work on
// read-only clients. Thread-safe as the Client is.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "comet/client.h"
#include "comet/status.h"

namespace comet {

// Fills *out with the last n entries of `stream`, oldest first: the entries of [length - n,
// length) that can be read (fewer when the stream holds fewer, or some are damaged, deleted or
// in a gap; damaged ones are counted in *corrupt if not null). NOT_FOUND if the stream does not
// exist.
Status ReadLast(Client* client, std::string_view stream, size_t n, std::vector<Entry>* out,
                uint64_t* corrupt = nullptr);

// The stream's readable entries span [oldest, newest]: their ids and append timestamps.
struct TimeSpan {
  bool empty = true;         // no readable entry: the rest is zero
  uint64_t oldest_entry = 0, newest_entry = 0;
  int64_t oldest_ns = 0, newest_ns = 0;
};
Result<TimeSpan> StreamTimeSpan(Client* client, std::string_view stream);

}  // namespace comet
