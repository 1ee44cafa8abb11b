// A small JSON reader for tests that check tools' JSON output (bpftool -j): objects, arrays,
// strings (escapes kept as written, \" and \\ decoded), numbers as their text, literals.
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace comet_test {

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  std::string text;                    // number or string
  bool boolean = false;
  std::vector<Json> items;             // array
  std::map<std::string, Json> fields;  // object

  const Json* Get(const std::string& k) const {
    auto it = fields.find(k);
    return it == fields.end() ? nullptr : &it->second;
  }
  uint64_t U64() const { return std::strtoull(text.c_str(), nullptr, 0); }

  // Parses s; false (with *where at the offending offset) on malformed input.
  static bool Parse(const std::string& s, Json* out, size_t* where = nullptr) {
    size_t i = 0;
    bool ok = Value(s, &i, out);
    Space(s, &i);
    if (ok && i != s.size()) ok = false;
    if (where) *where = i;
    return ok;
  }

 private:
  static void Space(const std::string& s, size_t* i) {
    while (*i < s.size() && std::isspace(static_cast<unsigned char>(s[*i]))) ++*i;
  }
  static bool Literal(const std::string& s, size_t* i, const char* word) {
    std::string w(word);
    if (s.compare(*i, w.size(), w) != 0) return false;
    *i += w.size();
    return true;
  }
  static bool String(const std::string& s, size_t* i, std::string* out) {
    if (s[*i] != '"') return false;
    for (++*i; *i < s.size(); ++*i) {
      char c = s[*i];
      if (c == '"') {
        ++*i;
        return true;
      }
      if (c == '\\' && *i + 1 < s.size()) {
        char e = s[++*i];
        if (e == '"' || e == '\\' || e == '/') {
          out->push_back(e);
        } else {
          out->push_back('\\');
          out->push_back(e);
        }
        continue;
      }
      out->push_back(c);
    }
    return false;
  }
  static bool Value(const std::string& s, size_t* i, Json* out) {
    Space(s, i);
    if (*i >= s.size()) return false;
    char c = s[*i];
    if (c == '{') {
      out->kind = kObject;
      ++*i;
      Space(s, i);
      if (*i < s.size() && s[*i] == '}') return ++*i, true;
      for (;;) {
        Space(s, i);
        std::string key;
        if (*i >= s.size() || !String(s, i, &key)) return false;
        Space(s, i);
        if (*i >= s.size() || s[*i] != ':') return false;
        ++*i;
        if (!Value(s, i, &out->fields[key])) return false;
        Space(s, i);
        if (*i < s.size() && s[*i] == ',') { ++*i; continue; }
        if (*i < s.size() && s[*i] == '}') return ++*i, true;
        return false;
      }
    }
    if (c == '[') {
      out->kind = kArray;
      ++*i;
      Space(s, i);
      if (*i < s.size() && s[*i] == ']') return ++*i, true;
      for (;;) {
        out->items.emplace_back();
        if (!Value(s, i, &out->items.back())) return false;
        Space(s, i);
        if (*i < s.size() && s[*i] == ',') { ++*i; continue; }
        if (*i < s.size() && s[*i] == ']') return ++*i, true;
        return false;
      }
    }
    if (c == '"') {
      out->kind = kString;
      return String(s, i, &out->text);
    }
    if (Literal(s, i, "true")) return out->kind = kBool, out->boolean = true, true;
    if (Literal(s, i, "false")) return out->kind = kBool, true;
    if (Literal(s, i, "null")) return out->kind = kNull, true;
    size_t start = *i;
    while (*i < s.size() && (std::isalnum(static_cast<unsigned char>(s[*i])) || s[*i] == '-' ||
                             s[*i] == '+' || s[*i] == '.'))
      ++*i;
    if (*i == start) return false;
    out->kind = kNumber;
    out->text = s.substr(start, *i - start);
    return true;
  }
};

}  // namespace comet_test
