// What libcomet.so shows the outside: its SONAME, exactly the functions comet.h declares under
// the symbol version COMET_1 (none of the C++ API or the internals), and a strict C99 program
// built against the header and linked to the shared library alone.
#include <unistd.h>

#include <regex>
#include <set>
#include <string>

#include "comet/comet.h"
#include "elf_util.h"
#include "test_util.h"

namespace {

// The functions comet.h declares: every `comet_<name>(` outside comments and preprocessor lines
// (the header declares and never calls).
std::set<std::string> HeaderFunctions() {
  std::string text = comet_test::ReadFile(COMET_HEADER);
  text = std::regex_replace(text, std::regex(R"(/\*[^*]*\*+([^/*][^*]*\*+)*/)"), " ");
  text = std::regex_replace(text, std::regex(R"((^|\n)[ \t]*#[^\n]*(\\\n[^\n]*)*)"), "\n");
  std::set<std::string> out;
  const std::regex decl(R"(\b(comet_[A-Za-z0-9_]+)\s*\()");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), decl); it != std::sregex_iterator();
       ++it) {
    out.insert((*it)[1]);
  }
  return out;
}

TEST(Abi, SharedLibraryExportsExactlyTheFunctionsOfTheHeader) {
  const std::set<std::string> declared = HeaderFunctions();
  ASSERT_GE(declared.size(), 20u) << "the declarations of " << COMET_HEADER << " were not found";
  for (const char* name : {"comet_open", "comet_scan_next", "comet_consumer_open",
                           "comet_consumer_read", "comet_consumer_ack", "comet_consumer_lag",
                           "comet_consumer_close", "comet_retention_run"}) {
    EXPECT_TRUE(declared.count(name)) << name << " is not declared in " << COMET_HEADER;
  }
  comet_test::Elf elf;
  ASSERT_TRUE(elf.Load(comet_test::SharedLibrary())) << comet_test::SharedLibrary();
  std::set<std::string> exported;
  for (const auto& [name, version] : elf.ExportedSymbols()) {
    exported.insert(name);
    EXPECT_EQ(version, "COMET_1") << name;
  }
  for (const std::string& name : declared) {
    EXPECT_TRUE(exported.count(name)) << name << " is declared in comet.h but not exported";
  }
  for (const std::string& name : exported) {
    EXPECT_TRUE(declared.count(name)) << name << " is exported but not declared in comet.h";
  }
}

TEST(Abi, SharedLibraryIsNamedForItsMajorVersion) {
  const std::string soname = "libcomet.so." + std::to_string(COMET_VERSION_MAJOR);
  comet_test::Elf elf;
  ASSERT_TRUE(elf.Load(comet_test::SharedLibrary()));
  EXPECT_EQ(elf.SoName(), soname);
  char target[256] = {};
  ASSERT_GT(::readlink(comet_test::SharedLibrary().c_str(), target, sizeof target - 1), 0)
      << comet_test::SharedLibrary() << " is not the link to " << soname;
  EXPECT_EQ(std::string(target), soname);
  EXPECT_EQ(comet_version(), COMET_VERSION);
  EXPECT_EQ(COMET_VERSION, COMET_VERSION_MAJOR * 10000 + COMET_VERSION_MINOR * 100 +
                               COMET_VERSION_PATCH);
}

class AbiProgramTest : public comet_test::TempDirTest {};

TEST_F(AbiProgramTest, AStrictC99ProgramRunsOnTheSharedLibraryAlone) {
  comet_test::RunResult r = comet_test::RunTool({comet_test::BinDir() + "/comet_c_client", dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "version=" + std::to_string(COMET_VERSION) +
                       " appended=100 scanned=100 consumed=100\n")
      << r.err;
}

}  // namespace
