// phivault: the command-line client for phivaultd (see docs/cli.md).
#include <iostream>

#include "crypto/secret.h"
#include "tools/cli.h"

int main(int argc, char** argv) {
  if (auto s = phivault::crypto::InitSodium(); !s.ok()) {
    std::cerr << "phivault: cannot initialise libsodium: " << s.message() << "\n";
    return phivault::tools::kExitError;
  }
  return phivault::tools::RunCli(argc, argv);
}
