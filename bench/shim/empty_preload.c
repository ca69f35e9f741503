// SPDX-License-Identifier: MIT
// An empty preload library: the cost of LD_PRELOAD itself, the floor under any preload shim.
int orphand_empty_preload_marker;
