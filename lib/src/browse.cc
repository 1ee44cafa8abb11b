// Browsing without touching offsets (see comet/browse.h).
#include "comet/browse.h"

namespace comet {

Status ReadLast(Client* client, std::string_view stream, size_t n, std::vector<Entry>* out,
                uint64_t* corrupt) {
  out->clear();
  Result<uint64_t> length = client->Length(stream);
  if (!length.ok()) return length.status();
  const uint64_t from = *length > n ? *length - n : 0;
  return client->ReadRange(stream, from, n, out, corrupt);
}

Result<TimeSpan> StreamTimeSpan(Client* client, std::string_view stream) {
  Result<Iterator> it = client->Scan(stream, 0);  // starts at the first retained entry
  if (!it.ok()) return it.status();
  Result<uint64_t> length = client->Length(stream);
  if (!length.ok()) return length.status();
  TimeSpan span;
  Entry e;
  // The oldest: the first entry that reads (damaged ones and gaps are passed over).
  while (it->position() < *length) {
    const uint64_t at = it->position();
    if (it->Next(&e).ok()) {
      span.empty = false;
      span.oldest_entry = e.id.entry;
      span.oldest_ns = e.timestamp_ns;
      break;
    }
    if (it->position() == at) return span;  // nothing further to read
  }
  if (span.empty) return span;
  // The newest: the last entry that reads, at or after the oldest.
  for (uint64_t at = *length; at-- > span.oldest_entry;) {
    if (client->Read(stream, at, &e).ok()) {
      span.newest_entry = at;
      span.newest_ns = e.timestamp_ns;
      return span;
    }
  }
  span.newest_entry = span.oldest_entry;
  span.newest_ns = span.oldest_ns;
  return span;
}

}  // namespace comet
