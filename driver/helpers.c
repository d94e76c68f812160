// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for hpcap.ko: kernel APIs that are static inline in C and have
 * no Rust binding in Linux 7.3. Each is wrapped once on the Rust side.
 */
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/sched.h>

int hpcap_dev_to_node(void *dev);

/* NUMA node of a device (NUMA_NO_NODE without CONFIG_NUMA). */
int hpcap_dev_to_node(void *dev)
{
	return dev_to_node((struct device *)dev);
}

void hpcap_cond_resched(void);

/* Lets other tasks run during a long loop in process context. */
void hpcap_cond_resched(void)
{
	cond_resched();
}

bool hpcap_file_writable(void *file);

/* Whether a file was opened for writing (FMODE_WRITE). */
bool hpcap_file_writable(void *file)
{
	return ((struct file *)file)->f_mode & FMODE_WRITE;
}
