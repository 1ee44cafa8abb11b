// Configuration: defaults, Set by key, value parsers, presets, and the C ABI.
#include "comet/config.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "comet/comet.h"
#include "comet/status.h"

namespace {

using comet::Code;
using comet::Config;
using comet::SyncMode;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB, kGiB = 1024 * kMiB;
constexpr uint64_t kMs = 1'000'000, kSec = 1'000'000'000;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A value refused either by Set itself or, for cross-field or range checks, by Validate.
comet::Status SetAndValidate(Config* c, const std::string& key, const std::string& value) {
  comet::Status s = c->Set(key, value);
  if (s.ok()) s = c->Validate();
  return s;
}

TEST(Config, DefaultsAreDocumentedValues) {
  Config c;
  EXPECT_EQ(c.storage.max_segment_bytes, 64 * kMiB);
  EXPECT_EQ(c.storage.max_entry_bytes, 64 * kMiB);
  EXPECT_EQ(c.sync.mode, SyncMode::kInterval);
  EXPECT_EQ(c.sync.interval_ns, 1 * kSec);
  EXPECT_EQ(c.sync.entries, 1000u);
  EXPECT_EQ(c.compression.min_bytes, 4096u);
  EXPECT_FALSE(c.open.read_only);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();

  Config d = Config::Default();
  EXPECT_EQ(d.storage.max_segment_bytes, c.storage.max_segment_bytes);
  EXPECT_EQ(d.sync.mode, c.sync.mode);
  EXPECT_EQ(d.compression.min_bytes, c.compression.min_bytes);
}

TEST(Config, SetAcceptsSizesDurationsAndModes) {
  Config c;
  ASSERT_TRUE(c.Set("storage.max_segment_bytes", "64KiB").ok());
  EXPECT_EQ(c.storage.max_segment_bytes, 64 * kKiB);
  ASSERT_TRUE(c.Set("sync.interval", "250ms").ok());
  EXPECT_EQ(c.sync.interval_ns, 250 * kMs);
  ASSERT_TRUE(c.Set("sync.mode", "always").ok());
  EXPECT_EQ(c.sync.mode, SyncMode::kAlways);
  ASSERT_TRUE(c.Set("sync.mode", "none").ok());
  EXPECT_EQ(c.sync.mode, SyncMode::kNone);
  ASSERT_TRUE(c.Set("sync.mode", "interval").ok());
  EXPECT_EQ(c.sync.mode, SyncMode::kInterval);
  ASSERT_TRUE(c.Set("sync.entries", "50").ok());
  EXPECT_EQ(c.sync.entries, 50u);
  ASSERT_TRUE(c.Set("compression.min_bytes", "1KiB").ok());
  EXPECT_EQ(c.compression.min_bytes, 1 * kKiB);
  ASSERT_TRUE(c.Set("storage.max_entry_bytes", "1MiB").ok());
  EXPECT_EQ(c.storage.max_entry_bytes, 1 * kMiB);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
}

TEST(Config, KeysListsTheDocumentedKeys) {
  const auto& keys = Config::Keys();
  for (const char* k : {"storage.max_segment_bytes", "storage.max_entry_bytes", "sync.mode",
                        "sync.interval", "sync.entries", "compression.min_bytes"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
  // Stable: the same vector each call.
  EXPECT_EQ(&Config::Keys(), &keys);
}

TEST(Config, UnknownKeyIsInvalidAndNamed) {
  Config c;
  comet::Status s = c.Set("sync.modee", "always");
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_TRUE(Contains(s.message(), "sync.modee")) << s.message();
  s = c.Set("", "1");
  EXPECT_EQ(s.code(), Code::kInvalid);
  s = c.Set("no_such_group.key", "1");
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_TRUE(Contains(s.message(), "no_such_group.key")) << s.message();
}

TEST(Config, BadSyncModeIsInvalidAndNamesKeyAndValue) {
  Config c;
  comet::Status s = c.Set("sync.mode", "sometimes");
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_TRUE(Contains(s.message(), "sync.mode")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "sometimes")) << s.message();
  EXPECT_EQ(c.sync.mode, SyncMode::kInterval) << "a refused value must not change the config";
}

TEST(Config, BadSizeIsInvalidAndNamesKey) {
  for (const char* v : {"", "abc", "12XB", "-5", "KiB", "1.5.5MiB", "99999999999999999999"}) {
    Config c;
    comet::Status s = c.Set("storage.max_segment_bytes", v);
    EXPECT_EQ(s.code(), Code::kInvalid) << "value '" << v << "'";
    EXPECT_TRUE(Contains(s.message(), "storage.max_segment_bytes")) << s.message();
    EXPECT_EQ(c.storage.max_segment_bytes, 64 * kMiB);
  }
}

TEST(Config, BadDurationIsInvalidAndNamesKey) {
  for (const char* v : {"", "abc", "10parsecs", "ms", "-1s", "5 minutes"}) {
    Config c;
    comet::Status s = c.Set("sync.interval", v);
    EXPECT_EQ(s.code(), Code::kInvalid) << "value '" << v << "'";
    EXPECT_TRUE(Contains(s.message(), "sync.interval")) << s.message();
    EXPECT_EQ(c.sync.interval_ns, 1 * kSec);
  }
}

// A Config filled in directly is held to the same ranges as Set: a 1 ns sync.interval would make
// the syncer spin.
TEST(Config, ValidateHoldsFieldsSetDirectlyToTheKeysRanges) {
  Config c;
  c.sync.interval_ns = 1;
  comet::Status s = c.Validate();
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_TRUE(Contains(s.message(), "sync.interval")) << s.message();
  c.sync.interval_ns = 1 * kMs;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
  c.storage.max_preallocated_bytes = ~uint64_t{0};
  EXPECT_EQ(c.Validate().code(), Code::kInvalid);
}

TEST(Config, OutOfRangeValuesAreRefused) {
  {
    Config c;  // segments are 4 KiB .. 4 GiB
    EXPECT_EQ(SetAndValidate(&c, "storage.max_segment_bytes", "1KiB").code(), Code::kInvalid);
  }
  {
    Config c;
    EXPECT_EQ(SetAndValidate(&c, "storage.max_segment_bytes", "8GiB").code(), Code::kInvalid);
  }
  {
    Config c;  // entries at most 1 GiB - 1
    EXPECT_EQ(SetAndValidate(&c, "storage.max_entry_bytes", "2GiB").code(), Code::kInvalid);
  }
  {
    Config c;  // zstd levels 1..19
    EXPECT_EQ(SetAndValidate(&c, "compression.level", "25").code(), Code::kInvalid);
  }
  {
    Config c;
    EXPECT_EQ(SetAndValidate(&c, "compression.level", "fast").code(), Code::kInvalid);
  }
}

TEST(Config, ConsumerWaitSpinTakesADurationUpToTenMilliseconds) {
  Config c;
  EXPECT_EQ(c.consumers.wait_spin_ns, 50'000u);
  ASSERT_TRUE(c.Set("consumers.wait_spin", "2ms").ok());
  EXPECT_EQ(c.consumers.wait_spin_ns, 2 * kMs);
  ASSERT_TRUE(c.Set("consumers.wait_spin", "0").ok());
  EXPECT_EQ(c.consumers.wait_spin_ns, 0u);
  comet::Status st = c.Set("consumers.wait_spin", "20ms");
  EXPECT_EQ(st.code(), Code::kInvalid);
  EXPECT_NE(st.message().find("consumers.wait_spin"), std::string::npos) << st.ToString();
  c.consumers.wait_spin_ns = 11 * kMs;
  EXPECT_EQ(c.Validate().code(), Code::kInvalid);
}

TEST(Config, ValidateRefusesOutOfRangeFieldsSetDirectly) {
  Config c;
  c.storage.max_segment_bytes = 100;
  EXPECT_EQ(c.Validate().code(), Code::kInvalid);
  Config d;
  d.storage.max_entry_bytes = 1ull << 30;  // one above the largest storable size
  EXPECT_EQ(d.Validate().code(), Code::kInvalid);
}

// ---- presets ---------------------------------------------------------------------------------

TEST(ConfigPresets, HighThroughputSyncsRarelyAndCompressesOnlyHugeEntries) {
  const Config d;
  const Config c = Config::HighThroughput();
  EXPECT_EQ(c.sync.interval_ns, 5 * kSec);
  EXPECT_EQ(c.sync.entries, 100'000u);
  EXPECT_EQ(c.compression.min_bytes, 1 * kMiB);
  EXPECT_GT(c.index.interval, d.index.interval);  // sparser index
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
}

TEST(ConfigPresets, HighCompressionCompressesSmallEntriesHarder) {
  const Config c = Config::HighCompression();
  EXPECT_EQ(c.compression.min_bytes, 512u);
  EXPECT_EQ(c.compression.level, 6);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
}

TEST(ConfigPresets, OptimizedSpreadsMemoryOverShardsWithinClamp) {
  // Clamped to 1 MiB .. 1 GiB.
  EXPECT_EQ(Config::Optimized(1000, 1).storage.max_segment_bytes, 1 * kMiB);
  EXPECT_EQ(Config::Optimized(1, 1u << 20).storage.max_segment_bytes, 1 * kGiB);
  // More memory: never smaller segments; more shards: never larger ones.
  uint64_t prev = 0;
  for (uint64_t mb : {16u, 64u, 256u, 1024u, 4096u}) {
    const uint64_t seg = Config::Optimized(16, mb).storage.max_segment_bytes;
    EXPECT_GE(seg, prev) << mb << " MiB";
    EXPECT_GE(seg, 1 * kMiB);
    EXPECT_LE(seg, 1 * kGiB);
    prev = seg;
  }
  EXPECT_GE(Config::Optimized(4, 1024).storage.max_segment_bytes,
            Config::Optimized(64, 1024).storage.max_segment_bytes);
  // It is a budget: the segments of all shards fit in the memory given.
  EXPECT_LE(Config::Optimized(16, 1024).storage.max_segment_bytes * 16, 1024 * kMiB);
  EXPECT_GT(Config::Optimized(4, 1024).storage.max_segment_bytes,
            Config::Optimized(1024, 1024).storage.max_segment_bytes);
  EXPECT_TRUE(Config::Optimized(16, 1024).Validate().ok());
}

TEST(ConfigPresets, PresetsDifferFromDefault) {
  const Config d;
  const Config tp = Config::HighThroughput();
  const Config hc = Config::HighCompression();
  EXPECT_NE(tp.sync.interval_ns, d.sync.interval_ns);
  EXPECT_NE(tp.compression.min_bytes, d.compression.min_bytes);
  EXPECT_NE(hc.compression.min_bytes, d.compression.min_bytes);
  EXPECT_NE(hc.compression.level, d.compression.level);
  EXPECT_NE(Config::Optimized(1000, 1).storage.max_segment_bytes, d.storage.max_segment_bytes);
}

// ---- parsers ---------------------------------------------------------------------------------

TEST(ParseDuration, AcceptsEveryDocumentedUnit) {
  struct {
    const char* text;
    uint64_t ns;
  } cases[] = {
      {"250ms", 250 * kMs},          {"1s", kSec},           {"5m", 300 * kSec},
      {"2h", 7200 * kSec},           {"7d", 7 * 86400 * kSec}, {"500us", 500'000},
      {"100ns", 100},                {"12345", 12345},       {"0", 0},
  };
  for (const auto& c : cases) {
    auto r = comet::ParseDuration(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.ns) << c.text;
  }
}

TEST(ParseDuration, RejectsGarbageWithInvalid) {
  for (const char* t : {"", "ms", "1x", "-1s", "abc", "1s2", "99999999999999999999d"}) {
    auto r = comet::ParseDuration(t);
    EXPECT_FALSE(r.ok()) << "accepted '" << t << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalid) << t;
      EXPECT_FALSE(r.status().message().empty()) << t;
    }
  }
}

TEST(ParseSize, AcceptsBinaryAndDecimalUnits) {
  struct {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"4096", 4096},          {"64KiB", 64 * kKiB},   {"64MiB", 64 * kMiB},
      {"1GiB", kGiB},          {"1KB", 1000},          {"2MB", 2'000'000},
      {"1GB", 1'000'000'000},  {"0", 0},
  };
  for (const auto& c : cases) {
    auto r = comet::ParseSize(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
}

TEST(ParseSize, RejectsGarbageWithInvalid) {
  for (const char* t : {"", "KiB", "12XB", "-1", "abc", "1 2", "99999999999GiB",
                        "99999999999999999999"}) {
    auto r = comet::ParseSize(t);
    EXPECT_FALSE(r.ok()) << "accepted '" << t << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalid) << t;
      EXPECT_FALSE(r.status().message().empty()) << t;
    }
  }
}

// ---- C ABI -----------------------------------------------------------------------------------

TEST(ConfigCAbi, SetGoodValuesReturnsOk) {
  comet_config* cfg = comet_config_new();
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(comet_config_set(cfg, "sync.mode", "always"), COMET_OK);
  EXPECT_EQ(comet_config_set(cfg, "storage.max_segment_bytes", "64KiB"), COMET_OK);
  EXPECT_EQ(comet_config_set(cfg, "sync.interval", "250ms"), COMET_OK);
  comet_config_free(cfg);
}

TEST(ConfigCAbi, UnknownKeyIsInvalidAndLastErrorNamesIt) {
  comet_config* cfg = comet_config_new();
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(comet_config_set(cfg, "bogus.key", "1"), COMET_ERR_INVALID);
  const char* msg = comet_last_error();
  ASSERT_NE(msg, nullptr);
  EXPECT_NE(std::strstr(msg, "bogus.key"), nullptr) << msg;
  comet_config_free(cfg);
}

TEST(ConfigCAbi, BadValueIsInvalidAndLastErrorNamesKey) {
  comet_config* cfg = comet_config_new();
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(comet_config_set(cfg, "sync.mode", "sometimes"), COMET_ERR_INVALID);
  const char* msg = comet_last_error();
  ASSERT_NE(msg, nullptr);
  EXPECT_NE(std::strstr(msg, "sync.mode"), nullptr) << msg;
  EXPECT_EQ(comet_config_set(cfg, "sync.interval", "soon"), COMET_ERR_INVALID);
  msg = comet_last_error();
  ASSERT_NE(msg, nullptr);
  EXPECT_NE(std::strstr(msg, "sync.interval"), nullptr) << msg;
  comet_config_free(cfg);
}

}  // namespace
