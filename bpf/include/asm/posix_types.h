/* Shim: Debian keeps <asm/posix_types.h> under a multiarch directory that clang
 * -target bpf does not search; the generic definition is the BPF one. */
#include <asm-generic/posix_types.h>
