// Stream names, shard routing (jump consistent hashing) and their C ABI.
#include "comet/stream.h"

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comet/comet.h"
#include "comet/status.h"

namespace {

using comet::Code;
using comet::ParseStreamName;
using comet::PickShard;

std::string Key(int i) { return "key-" + std::to_string(i); }

// ---- ParseStreamName --------------------------------------------------------------------------

TEST(StreamName, ParsesPrefixWithColonsAndUpperHexShard) {
  auto r = ParseStreamName("events:v1:shard:00A7");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prefix, "events:v1");
  EXPECT_EQ(r->shard, 0xA7u);
}

TEST(StreamName, ParsesSmallestAndLargestShard) {
  auto lo = ParseStreamName("logs:shard:0000");
  ASSERT_TRUE(lo.ok()) << lo.status().ToString();
  EXPECT_EQ(lo->prefix, "logs");
  EXPECT_EQ(lo->shard, 0u);
  auto hi = ParseStreamName("logs:shard:FFFF");
  ASSERT_TRUE(hi.ok()) << hi.status().ToString();
  EXPECT_EQ(hi->shard, 0xFFFFu);
}

TEST(StreamName, PrefixMayItselfLookLikeAStreamName) {
  auto r = ParseStreamName("x:shard:0001:shard:0002");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prefix, "x:shard:0001");
  EXPECT_EQ(r->shard, 2u);
}

TEST(StreamName, PrefixOfExactly192BytesIsAccepted) {
  const std::string prefix(192, 'p');
  auto r = ParseStreamName(prefix + ":shard:0003");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prefix, prefix);
  EXPECT_EQ(r->shard, 3u);
}

void ExpectRejected(const std::string& name) {
  auto r = ParseStreamName(name);
  ASSERT_FALSE(r.ok()) << "accepted invalid name '" << name << "'";
  EXPECT_EQ(r.status().code(), Code::kInvalid) << name;
  EXPECT_FALSE(r.status().message().empty()) << name;
}

TEST(StreamName, MalformedNamesAreRejectedAsInvalid) {
  for (const char* name : {"", "x", "x:", "x:shard:", "x:shard:42", "x:shard:00042",
                           "x:shard:00A7Z", ":shard:0001", "shard:0001", "x:shard:00 7",
                           "x:Shard:0001", "x:shard:-001", "x:shard:0x01", "x:shard0001"}) {
    SCOPED_TRACE(name);
    ExpectRejected(name);
  }
}

TEST(StreamName, LowerCaseHexShardIsRejected) { ExpectRejected("x:shard:00a7"); }

TEST(StreamName, SlashInPrefixIsRejected) {
  ExpectRejected("a/b:shard:0001");
  ExpectRejected("/:shard:0001");
  ExpectRejected("../x:shard:0001");
}

TEST(StreamName, ControlCharactersInPrefixAreRejected) {
  ExpectRejected("a\x01" "b:shard:0001");
  ExpectRejected("a\nb:shard:0001");
  ExpectRejected("a\tb:shard:0001");
  ExpectRejected("\x1f:shard:0001");
  ExpectRejected(std::string("a\0b:shard:0001", 14));
}

// comet.h promises UTF-8 names: a prefix that is not valid UTF-8 is refused, naming the offset.
TEST(StreamName, PrefixThatIsNotUtf8IsRejectedNamingTheByte) {
  for (const std::string& prefix :
       {std::string("\xff"), std::string("ab\xc3"), std::string("\xc0\xaf"),  // truncated, overlong
        std::string("x\xed\xa0\x80"),        // a UTF-16 surrogate
        std::string("\xf4\x90\x80\x80"),    // above U+10FFFF
        std::string("ok\x80ok")}) {           // a lone continuation byte
    SCOPED_TRACE(prefix);
    ExpectRejected(prefix + ":shard:0001");
    comet::Status st = comet::ValidatePrefix(prefix);
    EXPECT_EQ(st.code(), Code::kInvalid);
    EXPECT_NE(st.message().find("UTF-8"), std::string::npos) << st.message();
    char buf[256];
    EXPECT_EQ(comet_stream_name(prefix.c_str(), 1, buf, sizeof buf), COMET_ERR_INVALID);
  }
  auto st = comet::ValidatePrefix("ok\x80ok");
  EXPECT_NE(st.message().find("at 2"), std::string::npos) << st.message();
}

TEST(StreamName, Utf8PrefixesAreAccepted) {
  for (const char* prefix : {"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x9a\x80:logs",
                             "\xf4\x8f\xbf\xbf"}) {
    SCOPED_TRACE(prefix);
    auto r = ParseStreamName(std::string(prefix) + ":shard:0001");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->prefix, prefix);
  }
}

TEST(StreamName, DelCharacterInPrefixIsRejected) { ExpectRejected("a\x7f" "b:shard:0001"); }

TEST(StreamName, PrefixLongerThan192BytesIsRejected) {
  ExpectRejected(std::string(193, 'p') + ":shard:0001");
  ExpectRejected(std::string(4096, 'p') + ":shard:0001");
}

TEST(StreamName, RejectionMessageSaysWhatIsWrong) {
  auto r = ParseStreamName("a/b:shard:0001");
  ASSERT_FALSE(r.ok());
  // The message names the offending input so a user can find it.
  EXPECT_NE(r.status().message().find("a/b"), std::string::npos) << r.status().message();
}

TEST(StreamName, ValidatePrefixAppliesTheSameRules) {
  EXPECT_TRUE(comet::ValidatePrefix("events:v1").ok());
  EXPECT_TRUE(comet::ValidatePrefix(std::string(192, 'a')).ok());
  EXPECT_EQ(comet::ValidatePrefix("").code(), Code::kInvalid);
  EXPECT_EQ(comet::ValidatePrefix("a/b").code(), Code::kInvalid);
  EXPECT_EQ(comet::ValidatePrefix("a\nb").code(), Code::kInvalid);
  EXPECT_EQ(comet::ValidatePrefix(std::string(193, 'a')).code(), Code::kInvalid);
}

// ---- ShardStreamName ------------------------------------------------------------------------

TEST(StreamName, ShardStreamNameFormatsFourUpperHexDigits) {
  EXPECT_EQ(comet::ShardStreamName("events:v1", 0xA7), "events:v1:shard:00A7");
  EXPECT_EQ(comet::ShardStreamName("logs", 0), "logs:shard:0000");
  EXPECT_EQ(comet::ShardStreamName("logs", 0xFFFF), "logs:shard:FFFF");
  EXPECT_EQ(comet::ShardStreamName("logs", 0xBEEF), "logs:shard:BEEF");
}

TEST(StreamName, ShardStreamNameRoundTripsThroughParse) {
  for (uint32_t shard : {0u, 1u, 9u, 10u, 0xA7u, 0x100u, 0x1234u, 0xFFFEu, 0xFFFFu}) {
    for (const char* prefix : {"a", "events:v1", "x:shard:0001", "with space"}) {
      const std::string name = comet::ShardStreamName(prefix, shard);
      auto r = ParseStreamName(name);
      ASSERT_TRUE(r.ok()) << name << ": " << r.status().ToString();
      EXPECT_EQ(r->prefix, prefix);
      EXPECT_EQ(r->shard, shard);
    }
  }
}

// ---- PickShard ------------------------------------------------------------------------------

TEST(PickShard, SameKeySameShard) {
  for (int i = 0; i < 1000; i++) {
    const std::string k = Key(i);
    const uint32_t a = PickShard(k, 16);
    // A copy in a different buffer: the result depends on the bytes, not the address.
    const std::string copy(k.data(), k.size());
    EXPECT_EQ(a, PickShard(copy, 16));
    EXPECT_EQ(a, PickShard(copy.data(), copy.size(), 16));
  }
}

TEST(PickShard, ResultIsBelowShardCount) {
  for (uint32_t n : {1u, 2u, 3u, 7u, 16u, 100u, 1000u, 65536u}) {
    for (int i = 0; i < 2000; i++) {
      ASSERT_LT(PickShard(Key(i), n), n) << "n=" << n << " key=" << Key(i);
    }
  }
}

TEST(PickShard, OneShardAlwaysPicksZero) {
  for (int i = 0; i < 500; i++) EXPECT_EQ(PickShard(Key(i), 1), 0u);
  EXPECT_EQ(PickShard("", 0, 1), 0u);
}

TEST(PickShard, ZeroShardCountMeansSixteen) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 2000; i++) {
    const uint32_t s = PickShard(Key(i), 0);
    ASSERT_EQ(s, PickShard(Key(i), 16)) << Key(i);
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 16u);  // 2000 keys reach every one of 16 shards
}

TEST(PickShard, EmptyKeyIsRoutedInRange) {
  EXPECT_LT(PickShard("", 0, 16), 16u);
  EXPECT_EQ(PickShard("", 0, 16), PickShard(std::string_view(), 16));
}

TEST(PickShard, KeysSpreadEvenlyOverShards) {
  const int kKeys = 16000;
  std::map<uint32_t, int> count;
  for (int i = 0; i < kKeys; i++) count[PickShard(Key(i), 16)]++;
  ASSERT_EQ(count.size(), 16u);
  for (auto& [shard, c] : count) {
    EXPECT_GT(c, 1000 * 0.8) << "shard " << shard;
    EXPECT_LT(c, 1000 * 1.2) << "shard " << shard;
  }
}

// Jump consistent hashing: going from n to n+1 shards, a key either stays or moves to the new
// shard n, and about 1/(n+1) of the keys move.
TEST(PickShard, GrowingShardCountMovesOnlyKeysToTheNewShard) {
  const int kKeys = 10000;
  for (uint32_t n : {1u, 2u, 3u, 4u, 7u, 8u, 15u, 16u, 31u, 63u}) {
    int moved = 0;
    for (int i = 0; i < kKeys; i++) {
      const std::string k = Key(i);
      const uint32_t before = PickShard(k, n);
      const uint32_t after = PickShard(k, n + 1);
      if (before != after) {
        ASSERT_EQ(after, n) << "key " << k << " moved from " << before << " to " << after
                            << " when growing " << n << " -> " << n + 1;
        moved++;
      }
    }
    const double expected = static_cast<double>(kKeys) / (n + 1);
    EXPECT_GT(moved, expected * 0.75) << "n=" << n;
    EXPECT_LT(moved, expected * 1.25) << "n=" << n;
  }
}

TEST(PickShard, PickShardStreamNamesThePickedShard) {
  for (int i = 0; i < 200; i++) {
    const std::string k = Key(i);
    EXPECT_EQ(comet::PickShardStream("events:v1", k, 8),
              comet::ShardStreamName("events:v1", PickShard(k, 8)));
  }
}

// ---- AllShardsRange / AllShardStreams -------------------------------------------------------

TEST(AllShards, RangeListsZeroToN) {
  EXPECT_EQ(comet::AllShardsRange(4), (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(comet::AllShardsRange(1), (std::vector<uint32_t>{0}));
  auto sixteen = comet::AllShardsRange(0);
  ASSERT_EQ(sixteen.size(), 16u);
  for (uint32_t i = 0; i < 16; i++) EXPECT_EQ(sixteen[i], i);
}

TEST(AllShards, StreamsNameEveryShardInOrder) {
  EXPECT_EQ(comet::AllShardStreams("p", 3),
            (std::vector<std::string>{"p:shard:0000", "p:shard:0001", "p:shard:0002"}));
  auto all = comet::AllShardStreams("events:v1", 0);
  ASSERT_EQ(all.size(), 16u);
  EXPECT_EQ(all.front(), "events:v1:shard:0000");
  EXPECT_EQ(all.back(), "events:v1:shard:000F");
}

// ---- C ABI ----------------------------------------------------------------------------------

TEST(StreamCAbi, PickShardMatchesCpp) {
  for (uint32_t n : {0u, 1u, 5u, 16u, 1000u}) {
    for (int i = 0; i < 500; i++) {
      const std::string k = Key(i);
      EXPECT_EQ(comet_pick_shard(k.data(), k.size(), n), PickShard(k, n));
    }
  }
}

TEST(StreamCAbi, StreamNameWritesNulTerminatedName) {
  char buf[64];
  std::memset(buf, 'X', sizeof buf);
  ASSERT_EQ(comet_stream_name("events:v1", 0xA7, buf, sizeof buf), COMET_OK);
  EXPECT_STREQ(buf, "events:v1:shard:00A7");

  const size_t need = std::strlen("events:v1:shard:00A7") + 1;  // with its NUL
  std::memset(buf, 'X', sizeof buf);
  ASSERT_EQ(comet_stream_name("events:v1", 0xA7, buf, need), COMET_OK);
  EXPECT_STREQ(buf, "events:v1:shard:00A7");
}

TEST(StreamCAbi, StreamNameWithShortBufferIsTooLarge) {
  char buf[64];
  EXPECT_EQ(comet_stream_name("events:v1", 0xA7, buf, 5), COMET_ERR_TOO_LARGE);
  EXPECT_EQ(comet_stream_name("events:v1", 0xA7, buf, 0), COMET_ERR_TOO_LARGE);
  // Room for the characters but not the terminating NUL is still too small.
  EXPECT_EQ(comet_stream_name("events:v1", 0xA7, buf, std::strlen("events:v1:shard:00A7")),
            COMET_ERR_TOO_LARGE);
}

TEST(StreamCAbi, StrerrorNamesCodes) {
  EXPECT_STREQ(comet_strerror(COMET_ERR_NOT_FOUND), "COMET_ERR_NOT_FOUND");
  EXPECT_STREQ(comet_strerror(COMET_ERR_TOO_LARGE), "COMET_ERR_TOO_LARGE");
  EXPECT_STREQ(comet_strerror(COMET_ERR_NOT_OWNER), "COMET_ERR_NOT_OWNER");
}

}  // namespace
