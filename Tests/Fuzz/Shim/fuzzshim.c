#include "fuzzshim.h"
// Weak, so an ordinary build links without libFuzzer (the driver then replays its corpus and
// mutates it itself); scripts/fuzz.sh links libclang_rt.fuzzer_no_main and forces it in.
extern int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) __attribute__((weak));
int drplan_fuzz_available(void) { return LLVMFuzzerRunDriver != 0; }
int drplan_fuzz_run(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) { return LLVMFuzzerRunDriver(argc, argv, cb); }
