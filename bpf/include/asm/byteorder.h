/* Shim: catherd's BPF objects are built little-endian only (bpfel). */
#include <linux/byteorder/little_endian.h>
