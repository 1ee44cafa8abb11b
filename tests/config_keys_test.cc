// The table of configuration keys (config_keys.h): README's key table is the table, and Set and
// Validate hold every key to its range.
#include <unistd.h>

#include <climits>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/config.h"
#include "config_keys.h"

namespace {

using comet::Code;
using comet::Config;
using comet::internal::ConfigKey;
using comet::internal::ConfigKeys;
using comet::internal::KeyKind;

// README.md of the tree this test binary was built in (build/bin/comet_tests -> ../../).
std::string ReadReadme() {
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return {};
  std::string path(exe, static_cast<size_t>(n));
  for (int up = 0; up < 3; up++) path = path.substr(0, path.rfind('/'));
  std::ifstream in(path + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The lines of README's key table: from the header after "### Configuration keys" to the first
// line that is not a table row.
std::vector<std::string> ReadmeKeyTable() {
  const std::string readme = ReadReadme();
  const size_t at = readme.find("### Configuration keys");
  if (at == std::string::npos) return {};
  std::istringstream in(readme.substr(at));
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("|")) {
      rows.push_back(line);
    } else if (!rows.empty()) {
      break;
    }
  }
  return rows;
}

TEST(ConfigKeys, ReadmeKeyTableShowsEveryKeyWithItsDefaultRangeAndMeaning) {
  const std::vector<std::string> readme = ReadmeKeyTable();
  ASSERT_FALSE(readme.empty()) << "no key table under \"### Configuration keys\" in README.md";
  std::vector<std::string> want = {"| key | default | range | meaning |", "| --- | --- | --- | --- |"};
  const Config defaults;
  for (const ConfigKey& k : ConfigKeys()) {
    want.push_back("| `" + std::string(k.name) + "` | `" + ShowValue(k, defaults) + "` | " +
                   RangeText(k) + " | " + std::string(k.doc) + " |");
  }
  for (size_t i = 0; i < std::max(want.size(), readme.size()); i++) {
    EXPECT_EQ(i < readme.size() ? readme[i] : "(missing)", i < want.size() ? want[i] : "(extra)")
        << "README key table, line " << i + 1;
  }
}

TEST(ConfigKeys, KeysAreTheTableInItsOrder) {
  std::vector<std::string> names;
  for (const ConfigKey& k : ConfigKeys()) names.emplace_back(k.name);
  EXPECT_EQ(Config::Keys(), names);
}

TEST(ConfigKeys, EveryKeyTakesBackItsDefaultAsShown) {
  const Config defaults;
  for (const ConfigKey& k : ConfigKeys()) {
    Config c;
    const std::string shown = ShowValue(k, defaults);
    ASSERT_TRUE(c.Set(k.name, shown).ok()) << k.name << "=" << shown;
    EXPECT_EQ(ShowValue(k, c), shown) << k.name;
  }
  EXPECT_TRUE(defaults.Validate().ok()) << defaults.Validate().ToString();
}

// Set refuses a value just past either end of a key's range and takes each end; Validate refuses
// the same values set directly in the struct. The message names the key.
TEST(ConfigKeys, SetAndValidateHoldEveryNumberToItsRange) {
  for (const ConfigKey& k : ConfigKeys()) {
    if (k.kind != KeyKind::kSize && k.kind != KeyKind::kCount && k.kind != KeyKind::kDuration) {
      continue;
    }
    std::vector<uint64_t> outside;
    if (k.hi != UINT64_MAX) outside.push_back(k.hi + 1);
    if (k.lo > 0 && !(k.zero_off && k.lo == 1)) outside.push_back(k.lo - 1);
    for (uint64_t v : outside) {
      Config c;
      comet::Status st = c.Set(k.name, std::to_string(v));
      EXPECT_EQ(st.code(), Code::kInvalid) << k.name << "=" << v;
      EXPECT_NE(st.message().find(k.name), std::string::npos) << st.message();
      Config direct;
      k.set(direct, v);
      st = direct.Validate();
      EXPECT_EQ(st.code(), Code::kInvalid) << k.name << "=" << v << " set directly";
      EXPECT_NE(st.message().find(k.name), std::string::npos) << st.message();
    }
    for (uint64_t v : {k.lo, k.hi}) {
      Config c;
      EXPECT_TRUE(c.Set(k.name, std::to_string(v)).ok()) << k.name << "=" << v;
      EXPECT_EQ(k.get(c), v) << k.name;
    }
    if (k.zero_off) {
      Config c;
      EXPECT_TRUE(c.Set(k.name, "0").ok()) << k.name << "=0";
    }
  }
}

}  // namespace
