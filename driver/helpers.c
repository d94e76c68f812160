// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for hpcap.ko: kernel APIs that are static inline in C and have
 * no Rust binding in Linux 7.3. Each is wrapped once on the Rust side.
 */
#include <linux/device.h>

int hpcap_dev_to_node(void *dev);

/* NUMA node of a device (NUMA_NO_NODE without CONFIG_NUMA). */
int hpcap_dev_to_node(void *dev)
{
	return dev_to_node((struct device *)dev);
}
