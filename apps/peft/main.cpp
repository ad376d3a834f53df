// `peft`: one binary, git-style sub-commands (cli.md); the program itself is apps/peft/app.cpp.
#include "apps/peft/app.h"

int main(int argc, char** argv) { return peft::app::run_program(argc, argv); }
