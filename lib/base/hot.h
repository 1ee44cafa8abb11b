// COMET_HOT marks the functions one append runs through. The compiler places them in .text.hot,
// which the linker gathers in one place, so that an append touches a few pages of code instead
// of one page per source file: on a machine whose kernel empties the TLB at every system call,
// each distinct page an append touches after one costs a page walk.
#pragma once

#define COMET_HOT __attribute__((hot))

// COMET_HOT_PART marks a phase split out of a hot function so that it reads in parts: it is
// always inlined into its caller, so the split costs no call. Define it in the .cc file that
// calls it.
#define COMET_HOT_PART __attribute__((hot, always_inline)) inline
