// The system's libzstd (Debian: libzstd-dev). Only the stable API is used.
#include <zstd.h>
