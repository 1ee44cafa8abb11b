// Small text helpers shared by the library's renderings and the command-line tool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace comet::text {

// Length of the valid UTF-8 sequence starting at s[i] (a non-ASCII lead byte), or 0 if the bytes
// there are not one: overlong forms, surrogates and code points above U+10FFFF are invalid.
size_t Utf8SequenceLength(std::string_view s, size_t i);

// Appends s as a JSON string literal: always valid JSON; control characters and every byte that
// is not part of valid UTF-8 become \u00XX.
void AppendJsonString(std::string* out, std::string_view s);

// Fixed-width upper-case hexadecimal, as in Comet's file and directory names and stream names.
std::string UpperHex(uint64_t v, int width);
// Parses exactly `width` upper-case hex digits (no more, no fewer); false otherwise.
bool ParseUpperHex(std::string_view s, size_t width, uint64_t* out);

// A layout version as "major.minor" (format::control_version packs major << 16 | minor).
std::string VersionText(uint32_t v);

// printf into a std::string.
std::string Format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace comet::text
