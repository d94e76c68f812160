// SPDX-License-Identifier: MIT
/*
 * fsfault: an LD_PRELOAD shim that makes the storage of one process fail on
 * cue, for the userspace fault campaign (tests/fault/run). It stands in for
 * device-mapper's error/flakey targets and for a file system remounted
 * read-only where the campaign runs without a VM.
 *
 * HPCAP_FSFAULT="MODE:AFTER[:COUNT]" (unset: no faults)
 *   MODE   eio    pwrite() fails with EIO (a dying disk: dm-error)
 *          fsync  fsync()/fdatasync() fail with EIO (an error found at writeback)
 *          flakey pwrite() fails with EIO COUNT times, then works again (dm-flakey)
 *          erofs  from then on pwrite(), ftruncate(), open() for writing, rename(),
 *                 unlink(), mkdir() fail with EROFS (errors=remount-ro)
 *   AFTER  the fault starts once this many bytes went through pwrite()
 *   COUNT  flakey only: failures before it recovers (default 1)
 * Only files under HPCAP_FSFAULT_DIR (a path prefix, required) are affected,
 * so the process's other files (--stats-json) keep working. The first fault
 * is announced on stderr ("fsfault: ...") so the campaign can tell when it
 * struck.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum mode { NONE, EIO_WRITE, EIO_FSYNC, FLAKEY, ROFS };

static enum mode mode = NONE;
static unsigned long long after, written;
static long count = 1;
static int struck, announced;
static char dir[PATH_MAX];
static size_t dirlen;

static void init(void) __attribute__((constructor));
static void init(void)
{
	const char *s = getenv("HPCAP_FSFAULT"), *d = getenv("HPCAP_FSFAULT_DIR");
	char m[16];
	int n;

	if (!s || !d || !*d)
		return;
	if (!realpath(d, dir)) {
		snprintf(dir, sizeof(dir), "%s", d);
	}
	dirlen = strlen(dir);
	n = sscanf(s, "%15[a-z]:%llu:%ld", m, &after, &count);
	if (n < 2) {
		fprintf(stderr, "fsfault: bad HPCAP_FSFAULT '%s'\n", s);
		return;
	}
	if (!strcmp(m, "eio"))
		mode = EIO_WRITE;
	else if (!strcmp(m, "fsync"))
		mode = EIO_FSYNC;
	else if (!strcmp(m, "flakey"))
		mode = FLAKEY;
	else if (!strcmp(m, "erofs"))
		mode = ROFS;
	else
		fprintf(stderr, "fsfault: unknown mode '%s'\n", m);
}

static void announce(const char *what, int err)
{
	if (announced)
		return;
	announced = 1;
	fprintf(stderr, "fsfault: %s fails with %s after %llu bytes\n", what, strerror(err), written);
}

/* Is this path (absolute or relative to the working directory) ours? */
static int ours_path(const char *p)
{
	char buf[PATH_MAX];

	if (!p || mode == NONE)
		return 0;
	if (p[0] != '/') {
		if (!getcwd(buf, sizeof(buf)))
			return 0;
		strncat(buf, "/", sizeof(buf) - strlen(buf) - 1);
		strncat(buf, p, sizeof(buf) - strlen(buf) - 1);
		p = buf;
	}
	return !strncmp(p, dir, dirlen) && (p[dirlen] == '/' || p[dirlen] == 0);
}

static int ours_fd(int fd)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	if (mode == NONE)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = 0;
	return ours_path(path);
}

#define REAL(name) \
	static __typeof__(name) *real_##name; \
	if (!real_##name) \
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static int write_fault(int fd)
{
	if (!ours_fd(fd) || written < after)
		return 0;
	switch (mode) {
	case EIO_WRITE:
		announce("pwrite", EIO);
		return EIO;
	case FLAKEY:
		if (struck < count) {
			struck++;
			announce("pwrite", EIO);
			return EIO;
		}
		return 0;
	case ROFS:
		announce("pwrite", EROFS);
		return EROFS;
	default:
		return 0;
	}
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite);
	int e = write_fault(fd);

	if (e) {
		errno = e;
		return -1;
	}
	ssize_t n = real_pwrite(fd, buf, len, off);
	if (n > 0 && ours_fd(fd))
		written += (unsigned long long)n;
	return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

static int rofs_now(void)
{
	return mode == ROFS && written >= after;
}

/* Makes the intercepted call fail with err: said once on stderr. */
static int fail(const char *call, int err)
{
	announce(call, err);
	errno = err;
	return -1;
}

/* An fsync()-like call fails with EIO in fsync mode: the error a disk
 * reports at writeback. */
#define SYNC_WRAPPER(name) \
	int name(int fd) \
	{ \
		REAL(name); \
		if (mode == EIO_FSYNC && written >= after && ours_fd(fd)) \
			return fail(#name, EIO); \
		return real_##name(fd); \
	}
SYNC_WRAPPER(fsync)
SYNC_WRAPPER(fdatasync)

int ftruncate(int fd, off_t len)
{
	REAL(ftruncate);
	if (rofs_now() && ours_fd(fd))
		return fail("ftruncate", EROFS);
	return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len)
{
	return ftruncate(fd, len);
}

/* open() for writing fails with EROFS once the file system "went"
 * read-only; the mode argument exists only with O_CREAT. */
#define OPEN_WRAPPER(name) \
	int name(const char *path, int flags, ...) \
	{ \
		REAL(name); \
		mode_t m = 0; \
		if (flags & O_CREAT) { \
			va_list ap; \
			va_start(ap, flags); \
			m = va_arg(ap, mode_t); \
			va_end(ap); \
		} \
		if ((flags & (O_WRONLY | O_RDWR | O_CREAT)) && rofs_now() && ours_path(path)) \
			return fail("open", EROFS); \
		return real_##name(path, flags, m); \
	}
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

/* Calls that change a directory fail with EROFS on a read-only file
 * system. */
#define ROFS_WRAPPER(name, params, args, p1, p2) \
	int name params \
	{ \
		REAL(name); \
		if (rofs_now() && (ours_path(p1) || ours_path(p2))) \
			return fail(#name, EROFS); \
		return real_##name args; \
	}
ROFS_WRAPPER(rename, (const char *a, const char *b), (a, b), a, b)
ROFS_WRAPPER(unlink, (const char *p), (p), p, NULL)
ROFS_WRAPPER(mkdir, (const char *p, mode_t m), (p, m), p, NULL)
