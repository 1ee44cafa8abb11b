// C++ iostreams under the shim (tests/preload_test.cc): std::cout, std::cerr and std::clog
// with the default synchronisation with stdio (libstdc++ then writes through fwrite/putc), and
// after sync_with_stdio(false) (its own buffer, flushed with write/writev).
#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "unsynced") == 0) std::ios::sync_with_stdio(false);
  std::cout << "cout " << 1 << std::endl;
  std::cout << 'c' << "out " << 2.5 << '\n';
  std::cerr << "cerr " << 3 << '\n';
  std::clog << "clog " << 4 << std::endl;
  std::cout << "cout last" << std::endl;
  return 0;
}
