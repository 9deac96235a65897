/* hello: the benchmark's service program, ordinary libc build (dynamically
 * linked). Writes the same 16 bytes as hello-nolibc to stdout (the connection)
 * and exits. */
#include <unistd.h>

int main(void)
{
    static const char msg[16] = "spawnd-bench-ok\n";
    return write(1, msg, sizeof msg) == (ssize_t)sizeof msg ? 0 : 1;
}
