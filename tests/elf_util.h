// A small ELF64 reader for the tests that check what the build ships: the USDT notes of
// libcomet.so (as libbpf and bpftrace read them), its SONAME and its exported symbols.
#pragma once

#include <elf.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "test_util.h"

namespace comet_test {

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
  // A NUL-terminated string at `off` of the section with index `strtab`.
  std::string StringAt(uint32_t strtab, uint64_t off) const {
    return std::string(bytes.data() + sections.at(strtab).sh_offset + off);
  }
  // DT_SONAME of a shared object ("" if none).
  std::string SoName() const {
    const Elf64_Shdr* d = Find(".dynamic");
    if (!d) return "";
    for (uint64_t off = d->sh_offset; off + sizeof(Elf64_Dyn) <= d->sh_offset + d->sh_size;
         off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn dyn;
      std::memcpy(&dyn, bytes.data() + off, sizeof dyn);
      if (dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag == DT_SONAME) return StringAt(d->sh_link, dyn.d_un.d_val);
    }
    return "";
  }
  // The symbols a shared object defines for others (its .dynsym entries that are defined, global
  // or weak, and not the absolute symbols naming its versions), each with its version ("" if
  // unversioned), as `nm -D --defined-only` lists them.
  std::map<std::string, std::string> ExportedSymbols() const {
    std::map<std::string, std::string> out;
    const Elf64_Shdr* dynsym = Find(".dynsym");
    if (!dynsym) return out;
    // Version definitions: index -> name.
    std::map<uint16_t, std::string> versions;
    if (const Elf64_Shdr* vd = Find(".gnu.version_d")) {
      uint64_t off = vd->sh_offset;
      for (uint64_t i = 0; i < vd->sh_info; i++) {
        Elf64_Verdef def;
        Elf64_Verdaux aux;
        std::memcpy(&def, bytes.data() + off, sizeof def);
        std::memcpy(&aux, bytes.data() + off + def.vd_aux, sizeof aux);
        versions[def.vd_ndx] = StringAt(vd->sh_link, aux.vda_name);
        off += def.vd_next;
      }
    }
    const Elf64_Shdr* versym = Find(".gnu.version");
    const uint64_t count = dynsym->sh_size / sizeof(Elf64_Sym);
    for (uint64_t i = 1; i < count; i++) {
      Elf64_Sym sym;
      std::memcpy(&sym, bytes.data() + dynsym->sh_offset + i * sizeof sym, sizeof sym);
      const unsigned bind = ELF64_ST_BIND(sym.st_info);
      if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS) continue;
      if (bind != STB_GLOBAL && bind != STB_WEAK) continue;
      std::string version;
      if (versym) {
        uint16_t v;
        std::memcpy(&v, bytes.data() + versym->sh_offset + i * sizeof v, sizeof v);
        auto it = versions.find(static_cast<uint16_t>(v & 0x7fff));
        if (it != versions.end()) version = it->second;
      }
      out[StringAt(dynsym->sh_link, sym.st_name)] = version;
    }
    return out;
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

}  // namespace comet_test
