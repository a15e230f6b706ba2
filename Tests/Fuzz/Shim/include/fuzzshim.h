#include <stddef.h>
#include <stdint.h>
/// Whether libFuzzer is linked in (scripts/fuzz.sh builds it so); 0 in an ordinary build.
int drplan_fuzz_available(void);
/// libFuzzer's driver: parses its flags from argv and calls `cb` with each input.
int drplan_fuzz_run(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t));
