// The USDT probe sites as shipped in libcomet.so: every probe of COMET_PROBE_PAIRS is there, in
// provider "comet", with a semaphore in .probes, at a 1-byte nop, with the documented argument
// count. Read from the ELF notes directly, as libbpf and bpftrace read them.
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "elf_util.h"
#include "probes.h"
#include "test_util.h"

namespace {

using comet_test::Elf;
using comet_test::Site;

size_t ArgCount(const std::string& args) {
  if (args.empty()) return 0;
  size_t n = 1;
  for (char c : args) n += c == ' ';
  return n;
}

TEST(Usdt, EveryProbeIsInTheSharedLibraryWithASemaphoreAtAOneByteNop) {
  Elf elf;
  ASSERT_TRUE(elf.Load(comet_test::SharedLibrary())) << comet_test::SharedLibrary();
  const Elf64_Shdr* probes = elf.Find(".probes");
  ASSERT_NE(probes, nullptr) << "no .probes section (semaphores) in " << comet_test::SharedLibrary();

  std::set<std::string> expected;
#define COMET_TEST_NAME_(op) expected.insert(#op "_start"), expected.insert(#op "_done");
  COMET_PROBE_PAIRS(COMET_TEST_NAME_)
#undef COMET_TEST_NAME_

  std::set<std::string> seen;
  for (const Site& s : elf.Sites()) {
    if (s.provider != "comet") continue;
    SCOPED_TRACE(s.name);
    seen.insert(s.name);
    EXPECT_TRUE(expected.count(s.name)) << "probe not in COMET_PROBE_PAIRS";
    EXPECT_GE(s.semaphore, probes->sh_addr);
    EXPECT_LT(s.semaphore, probes->sh_addr + probes->sh_size);
    EXPECT_EQ(elf.CodeByte(s.pc), 0x90) << "the site is not a 1-byte nop";
    const bool done = s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, "_done") == 0;
    const bool weighted = s.name == "append_done" || s.name == "read_done";
    EXPECT_EQ(ArgCount(s.args), done ? (weighted ? 6u : 5u) : 4u) << s.args;
  }
  EXPECT_EQ(seen, expected);
}

}  // namespace
