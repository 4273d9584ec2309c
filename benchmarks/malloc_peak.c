/* A malloc counter for benchmarks: LD_PRELOAD it to measure the peak of bytes a process holds from
 * malloc (usable sizes of live blocks), which is what an implementation actually needs, independent of
 * how much freed memory the C allocator keeps resident (peak RSS includes that, and it varies by tens
 * of MB between identical runs).
 *
 *     cc -O2 -shared -fPIC benchmarks/malloc_peak.c -o /tmp/malloc_peak.so -ldl
 *     python benchmarks/speed_vs_official.py ... --memory --malloc-peak /tmp/malloc_peak.so
 *
 * mtrack_live() / mtrack_peak() / mtrack_reset() are looked up by the benchmark with ctypes.
 * Allocations made before the real allocator is resolved come from a small static buffer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

static atomic_long live, peak;
static void *(*real_malloc)(size_t), *(*real_calloc)(size_t, size_t), *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t), *(*real_memalign)(size_t, size_t);
static char boot[1 << 16];
static size_t boot_used;

static int in_boot(const void *p) { return (const char *)p >= boot && (const char *)p < boot + sizeof boot; }

static void resolve(void)
{
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
}

static void count(void *p)
{
    if (!p) return;
    long n = atomic_fetch_add(&live, (long)malloc_usable_size(p)) + (long)malloc_usable_size(p);
    long pk = atomic_load(&peak);
    while (n > pk && !atomic_compare_exchange_weak(&peak, &pk, n)) {
    }
}

static void uncount(void *p)
{
    if (p && !in_boot(p)) atomic_fetch_sub(&live, (long)malloc_usable_size(p));
}

void *malloc(size_t n)
{
    if (!real_malloc) { /* dlsym itself may allocate: serve it from the static buffer */
        void *p = boot + boot_used;
        boot_used += (n + 15) & ~(size_t)15;
        return boot_used <= sizeof boot ? p : NULL;
    }
    void *p = real_malloc(n);
    count(p);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (!real_calloc) {
        void *p = malloc(a * b);
        if (p) memset(p, 0, a * b);
        return p;
    }
    void *p = real_calloc(a, b);
    count(p);
    return p;
}

void *realloc(void *q, size_t n)
{
    if (!real_realloc) resolve();
    uncount(q);
    void *p = real_realloc(q, n);
    count(p ? p : q);
    return p;
}

void free(void *p)
{
    if (!p || in_boot(p)) return;
    if (!real_free) resolve();
    uncount(p);
    real_free(p);
}

int posix_memalign(void **r, size_t a, size_t n)
{
    if (!real_posix_memalign) resolve();
    int e = real_posix_memalign(r, a, n);
    if (!e) count(*r);
    return e;
}

void *aligned_alloc(size_t a, size_t n)
{
    if (!real_aligned_alloc) resolve();
    void *p = real_aligned_alloc(a, n);
    count(p);
    return p;
}

void *memalign(size_t a, size_t n)
{
    if (!real_memalign) resolve();
    void *p = real_memalign(a, n);
    count(p);
    return p;
}

__attribute__((constructor)) static void init(void) { resolve(); }

long mtrack_live(void) { return atomic_load(&live); }
long mtrack_peak(void) { return atomic_load(&peak); }
void mtrack_reset(void) { atomic_store(&peak, atomic_load(&live)); }
