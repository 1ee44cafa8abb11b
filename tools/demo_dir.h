// The demo's data directory guard: `comet demo` wipes its directory before each run, so it only
// ever wipes a directory that is empty or carries the marker file a previous demo left in it.
#pragma once

#include <string>

#include "comet/status.h"

namespace comet::cli {

inline constexpr const char* kDemoMarker = ".comet-demo";

// Makes `dir` an empty directory holding only the marker: creates it if missing, wipes it if it
// holds the marker, and refuses (INVALID, naming the directory) if it holds anything else.
Status PrepareDemoDir(const std::string& dir);

}  // namespace comet::cli
