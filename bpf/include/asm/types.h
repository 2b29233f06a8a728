/* Shim: <linux/types.h> wants <asm/types.h>, which Debian keeps under a
 * multiarch directory that clang -target bpf does not search. The BPF
 * target is arch-independent, so the generic definitions are the right ones. */
#include <asm-generic/types.h>
