/* The boot guests' serial/PASS/FAIL/debug-exit helpers, compiled into this guest too. */
#include "../boot/common.c"
