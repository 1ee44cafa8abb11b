// The USDT probe sites as shipped in libcomet.so: every probe of COMET_PROBE_PAIRS is there, in
// provider "comet", with a semaphore in .probes, at a 1-byte nop, with the documented argument
// count. Read from the ELF notes directly, as libbpf and bpftrace read them.
#include <elf.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "probes.h"
#include "test_util.h"

namespace {

struct Site {
  uint64_t pc = 0, base = 0, semaphore = 0;
  std::string provider, name, args;
};

struct Elf {
  std::string bytes;
  std::vector<Elf64_Shdr> sections;
  std::vector<std::string> names;

  bool Load(const std::string& path) {
    bytes = comet_test::ReadFile(path);
    if (bytes.size() < sizeof(Elf64_Ehdr)) return false;
    Elf64_Ehdr eh;
    std::memcpy(&eh, bytes.data(), sizeof eh);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) return false;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
      Elf64_Shdr sh;
      std::memcpy(&sh, bytes.data() + eh.e_shoff + uint64_t{i} * eh.e_shentsize, sizeof sh);
      sections.push_back(sh);
    }
    const Elf64_Shdr& strtab = sections.at(eh.e_shstrndx);
    for (const Elf64_Shdr& sh : sections) names.emplace_back(bytes.data() + strtab.sh_offset + sh.sh_name);
    return true;
  }
  const Elf64_Shdr* Find(const std::string& name) const {
    for (size_t i = 0; i < sections.size(); i++)
      if (names[i] == name) return &sections[i];
    return nullptr;
  }
  // The file byte at virtual address `addr` in an executable section, or -1.
  int CodeByte(uint64_t addr) const {
    for (const Elf64_Shdr& sh : sections) {
      if ((sh.sh_flags & SHF_EXECINSTR) && addr >= sh.sh_addr && addr < sh.sh_addr + sh.sh_size)
        return static_cast<unsigned char>(bytes[sh.sh_offset + (addr - sh.sh_addr)]);
    }
    return -1;
  }
  std::vector<Site> Sites() const {
    std::vector<Site> out;
    const Elf64_Shdr* n = Find(".note.stapsdt");
    if (!n) return out;
    size_t off = n->sh_offset, end = n->sh_offset + n->sh_size;
    auto align4 = [](size_t v) { return (v + 3) & ~size_t{3}; };
    while (off + sizeof(Elf64_Nhdr) <= end) {
      Elf64_Nhdr nh;
      std::memcpy(&nh, bytes.data() + off, sizeof nh);
      const char* name = bytes.data() + off + sizeof nh;
      const char* desc = name + align4(nh.n_namesz);
      if (nh.n_type == 3 && std::strcmp(name, "stapsdt") == 0) {
        Site s;
        std::memcpy(&s.pc, desc, 8);
        std::memcpy(&s.base, desc + 8, 8);
        std::memcpy(&s.semaphore, desc + 16, 8);
        s.provider = desc + 24;
        s.name = desc + 24 + s.provider.size() + 1;
        s.args = desc + 24 + s.provider.size() + 1 + s.name.size() + 1;
        out.push_back(s);
      }
      off += sizeof nh + align4(nh.n_namesz) + align4(nh.n_descsz);
    }
    return out;
  }
};

std::string LibPath() {
  const char* bin = std::getenv("COMET_BIN");
  std::string b = bin && *bin ? bin : "build/bin/comet";
  return b.substr(0, b.rfind('/')) + "/../lib/libcomet.so";
}

size_t ArgCount(const std::string& args) {
  if (args.empty()) return 0;
  size_t n = 1;
  for (char c : args) n += c == ' ';
  return n;
}

TEST(Usdt, EveryProbeIsInTheSharedLibraryWithASemaphoreAtAOneByteNop) {
  Elf elf;
  ASSERT_TRUE(elf.Load(LibPath())) << LibPath();
  const Elf64_Shdr* probes = elf.Find(".probes");
  ASSERT_NE(probes, nullptr) << "no .probes section (semaphores) in " << LibPath();

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
