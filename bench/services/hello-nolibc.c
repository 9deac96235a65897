/* hello-nolibc: the benchmark's service program without libc, without a dynamic
 * loader: a static freestanding executable whose whole work is two system calls,
 * write(1, msg, 16) and exit(0). It measures what a super-server costs when the
 * program itself costs next to nothing.
 *
 * Build: cc -O2 -nostdlib -static -ffreestanding -fno-stack-protector \
 *           -fno-pie -no-pie -o hello-nolibc hello-nolibc.c
 */

static const char msg[16] = "spawnd-bench-ok\n";

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}
#define SYS_WRITE 1
#define SYS_EXIT 60
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
#define SYS_WRITE 64
#define SYS_EXIT 93
#else
#error "hello-nolibc: only x86_64 and aarch64 are supported"
#endif

#if defined(__x86_64__)
__attribute__((force_align_arg_pointer))
#endif
__attribute__((noreturn, used)) void _start(void)
{
    long r = sys3(SYS_WRITE, 1, (long)msg, sizeof msg);
    sys3(SYS_EXIT, r == (long)sizeof msg ? 0 : 1, 0, 0);
    for (;;)
        ;
}
