// SPDX-License-Identifier: MIT
// Two writers filling alternate chunks of one buffer, as two capture
// consumers fill consecutive batches of the stream buffer: the cost per
// record against each writer filling a buffer of its own. Evidence for
// docs/architecture.md, "Two writers at 64 B".
//
//   cc -O2 -pthread -o interleave tests/bench/interleave.c
//   ./interleave SHARED THREADS CHUNK   # SHARED 1: alternate chunks of one
//                                       # buffer; 0: a buffer per thread
// Prints each thread's median TSC cycles per 80-byte record (64 bytes
// copied) over 20000 chunks.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>

#define BUF (64ul << 20)
#define REC 80ul
#define CHUNKS 20000

static char *shared_buf;
static int nthreads, interleave;
static unsigned long chunk;
static char src[4096 * 64];

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void *run(void *arg)
{
	long me = (long)arg;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(me, &s);
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
	char *dst = shared_buf;
	if (!interleave) {
		dst = aligned_alloc(4096, BUF);
		memset(dst, 0, BUF);
	}
	uint64_t *t = calloc(CHUNKS, sizeof(*t));
	uint64_t k = me;
	int n = 0;
	for (int it = 0; it < CHUNKS; it++) {
		uint64_t off = (k * chunk) % BUF;
		k += interleave ? nthreads : 1;
		if (off + chunk > BUF)
			continue;
		uint64_t t0 = __rdtsc();
		for (uint64_t p = 0; p + REC <= chunk; p += REC)
			memcpy(dst + off + p, src + (p / REC % 4096) * 64, 64);
		t[n++] = __rdtsc() - t0;
	}
	qsort(t, n, sizeof(*t), cmp);
	printf("thread %ld, %s, %d thread(s), chunks of %lu B: median %.1f cycles per record\n",
	       me, interleave ? "alternate chunks of one buffer" : "own buffer", nthreads,
	       chunk, (double)t[n / 2] / (double)(chunk / REC));
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s SHARED(0|1) THREADS(1|2) CHUNK_BYTES\n", argv[0]);
		return 2;
	}
	interleave = atoi(argv[1]);
	nthreads = atoi(argv[2]);
	chunk = strtoul(argv[3], NULL, 0);
	if (nthreads < 1 || nthreads > 2 || chunk < REC || chunk > BUF) {
		fprintf(stderr, "THREADS 1 or 2, CHUNK_BYTES %lu..%lu\n", REC, BUF);
		return 2;
	}
	shared_buf = aligned_alloc(4096, BUF);
	memset(shared_buf, 0, BUF);
	memset(src, 3, sizeof(src));
	pthread_t th[2];
	for (long i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, run, (void *)i);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	return 0;
}
