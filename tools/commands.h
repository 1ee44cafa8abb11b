// The `comet` subcommands. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <span>

namespace comet::cli {

int RunAppend(std::span<char* const> args);
int RunTail(std::span<char* const> args);
int RunConsume(std::span<char* const> args);
int RunGroups(std::span<char* const> args);
int RunInspect(std::span<char* const> args);
int RunVerify(std::span<char* const> args);
int RunDemo(std::span<char* const> args);
int RunStats(std::span<char* const> args);
int RunExporter(std::span<char* const> args);
int RunProbe(std::span<char* const> args);
int RunRetention(std::span<char* const> args);

}  // namespace comet::cli
