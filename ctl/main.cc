// File: ctl/main.cc
//
// chstreamctl: see ctl.h (`chstreamctl --help`).
#include <iostream>
#include <string>
#include <vector>

#include "ctl/ctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return chstream::ctl::Run(args, std::cout, std::cerr);
}
