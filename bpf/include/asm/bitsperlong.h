/* Shim: Debian keeps <asm/bitsperlong.h> under a multiarch directory that
 * clang -target bpf does not search. BPF registers are 64 bits wide. */
#define __BITS_PER_LONG 64
#include <asm-generic/bitsperlong.h>
