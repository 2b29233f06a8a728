/* Shim: Debian keeps <asm/swab.h> under a multiarch directory that clang
 * -target bpf does not search; the generic definition is the BPF one. */
#include <asm-generic/swab.h>
