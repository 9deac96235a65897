/* bareloop: the reference super-server for the benchmark - the least a
 * fork-per-connection server can do.
 *
 *   loop: accept4 -> vfork (or fork, or posix_spawn) -> child: dup2 the
 *         connection to fd 0 and 1, execve the program -> parent: close the
 *         connection, reap finished children with waitpid(WNOHANG).
 *
 * Options:
 *   -m vfork|fork|spawn|launch  how the child is started (default vfork);
 *                        launch is clone(CLONE_VM) without CLONE_VFORK: the
 *                        loop goes on while the child execs, as spawnd's
 *                        launches do (a stack per child in flight, reused
 *                        once the kernel clears its CLONE_CHILD_CLEARTID
 *                        word at the child's exec or exit)
 *   -a ADDR              IPv4 loopback address to listen on (default 127.0.0.1)
 *   -p PORT              first port (default 20000)
 *   -n N                 serve N ports, PORT .. PORT+N-1 (default 1); with N > 1
 *                        the listeners are watched with epoll
 *   -x N                 also open N extra listening sockets (ephemeral ports,
 *                        never served): they only fill the descriptor table,
 *                        as 3,000 configured services would
 *   -b N                 listen backlog (default 128)
 *   -s                   shared descriptor table, as spawnd has with more than 64
 *                        descriptors open (with -m vfork or -m launch): the child
 *                        is cloned with CLONE_FILES and makes the table its own
 *                        with close_range(..., CLOSE_RANGE_UNSHARE), which copies
 *                        only the few descriptors it keeps, so a spawn costs the
 *                        same however many listeners are open. With -m vfork
 *                        the loop waits for the exec and then closes the
 *                        connection; with -m launch the connection is sent to
 *                        the child (SCM_RIGHTS, one socket pair per child in
 *                        flight, one child per CPU) and closed at once, and a
 *                        spawn with every pair busy waits for its exec, as
 *                        spawnd's launches do
 *   -e                   event loop shaped like spawnd's (the `bare epoll` row):
 *                        every listener, even a single one, non-blocking in an
 *                        edge-triggered epoll and accepted until EAGAIN; SIGCHLD
 *                        blocked and read from a signalfd in the same epoll, and
 *                        children reaped only when it fires; the child empties
 *                        its signal mask before execve. Nothing else of
 *                        spawnd's: no access check, limits, log or process group.
 *   -- PROG [ARG...]     the program (absolute path); argv[0] defaults to PROG
 *
 * The child gets a fixed environment of PATH only. Only loopback addresses are
 * accepted. Stop it with SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/close_range.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum mode { M_VFORK, M_FORK, M_SPAWN, M_LAUNCH };

static enum mode mode = M_VFORK;
static int event_loop; /* -e */
static int shared_table; /* -s */
static char **child_argv;
static char *child_envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};

static void die(const char *what)
{
    fprintf(stderr, "bareloop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listen_on(struct in_addr addr, int port, int backlog, int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "bareloop: bind %s:%d: %s\n", inet_ntoa(addr), port, strerror(errno));
        exit(1);
    }
    if (listen(fd, backlog) < 0)
        die("listen");
    return fd;
}

/* -m launch: children in flight, each with its own stack. */
enum { LAUNCHES = 64, LAUNCH_STACK = 64 * 1024 };
static char *launch_stack[LAUNCHES];
static volatile pid_t launch_tid[LAUNCHES]; /* set at clone, zeroed by the kernel at exec or exit */
static int nlaunch = LAUNCHES;
/* -s -m launch: per launch slot, the loop's end and the child's end of a
 * datagram socket pair the connection is sent on. */
static int pair_loop[LAUNCHES], pair_child[LAUNCHES];
/* -s: the child keeps descriptors below this (0-2 and the pairs' ends). */
static int keep_below = 3;
static char *wait_stack; /* -s: the stack of a child the loop waits for */

/* The child's end: the connection on stdin and stdout, the program. A
 * launched child runs beside the loop in the same memory: system calls only
 * (through syscall(), which writes errno, in the loop's TLS block, only when
 * a call fails), no allocation and no locks. */
static int exec_on(long c)
{
    syscall(SYS_dup2, c, 0);
    syscall(SYS_dup2, c, 1);
    if (event_loop) {
        sigset_t none;
        sigemptyset(&none);
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
    }
    syscall(SYS_execve, child_argv[0], child_argv, child_envp);
    syscall(SYS_exit, 127);
    return 127;
}

static int launch_child(void *arg)
{
    return exec_on((long)arg);
}

static char *map_stack(void)
{
    char *stack = mmap(NULL, LAUNCH_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        die("mmap");
    return stack;
}

/* -s, waited for: the connection is below keep_below or is the highest kept. */
static int shared_wait_child(void *arg)
{
    long c = (long)arg;
    syscall(SYS_close_range, c >= keep_below ? c + 1 : keep_below, ~0U, CLOSE_RANGE_UNSHARE);
    return exec_on(c);
}

/* One byte with room for one descriptor, as sent on a launch slot's pair. */
struct fd_message {
    char byte;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov;
    struct msghdr msg;
};

static void fd_message_init(struct fd_message *m)
{
    memset(m, 0, sizeof *m);
    m->iov = (struct iovec){.iov_base = &m->byte, .iov_len = 1};
    m->msg = (struct msghdr){.msg_iov = &m->iov, .msg_iovlen = 1, .msg_control = m->control.buf,
                             .msg_controllen = sizeof m->control.buf};
}

/* The connection sent on a pair (close-on-exec), or -1. Raw system calls
 * only: a launched child calls it too (and memset is async-signal-safe). */
static int take_connection(int pair, int flags)
{
    struct fd_message m;
    fd_message_init(&m);
    if (syscall(SYS_recvmsg, pair, &m.msg, flags | MSG_CMSG_CLOEXEC) < 0)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m.msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS)
        return -1;
    int c;
    memcpy(&c, CMSG_DATA(cm), sizeof c);
    return c;
}

/* -s, launched: the table made its own, the connection is taken from the pair. */
static int shared_launch_child(void *arg)
{
    long k = (long)arg;
    syscall(SYS_close_range, keep_below, ~0U, CLOSE_RANGE_UNSHARE);
    int c = take_connection(pair_child[k], 0);
    if (c < 0)
        syscall(SYS_exit, 126);
    return exec_on(c);
}

static int send_connection(int pair, int c)
{
    struct fd_message m;
    fd_message_init(&m);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m.msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c, sizeof c);
    return sendmsg(pair, &m.msg, MSG_DONTWAIT) == 1 ? 0 : -1;
}

/* Takes back and closes a connection sent to a child that was never started. */
static void discard_sent(int pair)
{
    int c = take_connection(pair, MSG_DONTWAIT);
    if (c >= 0)
        close(c);
}

/* -s -m launch: a free slot, or -1 when every child is still before its exec. */
static int free_slot(void)
{
    for (int k = 0; k < nlaunch; k++) {
        if (launch_tid[k] == 0) {
            if (!launch_stack[k])
                launch_stack[k] = map_stack();
            return k;
        }
    }
    return -1;
}

/* A free launch slot, waiting (futex) for the oldest child's exec if all
 * are in flight. */
static int launch_slot(void)
{
    for (;;) {
        for (int k = 0; k < LAUNCHES; k++) {
            if (launch_tid[k] == 0) {
                if (!launch_stack[k])
                    launch_stack[k] = map_stack();
                return k;
            }
        }
        pid_t t = launch_tid[0];
        if (t)
            syscall(SYS_futex, &launch_tid[0], FUTEX_WAIT, t, NULL, NULL, 0);
    }
}

static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void serve(int c)
{
    pid_t pid;
    if (shared_table) {
        int k = mode == M_LAUNCH ? free_slot() : -1;
        if (k >= 0 && send_connection(pair_loop[k], c) == 0) {
            pid = clone(shared_launch_child, launch_stack[k] + LAUNCH_STACK,
                        CLONE_VM | CLONE_FILES | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD,
                        (void *)(long)k, (pid_t *)&launch_tid[k], NULL, (pid_t *)&launch_tid[k]);
            if (pid < 0)
                discard_sent(pair_child[k]); /* or the slot's next child would take it */
        } else {
            pid = clone(shared_wait_child, wait_stack + LAUNCH_STACK, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD,
                        (void *)(long)c);
        }
        if (pid < 0)
            perror("bareloop: clone");
    } else if (mode == M_SPAWN) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, c, 0);
        posix_spawn_file_actions_adddup2(&fa, c, 1);
        int e = posix_spawn(&pid, child_argv[0], &fa, NULL, child_argv, child_envp);
        posix_spawn_file_actions_destroy(&fa);
        if (e != 0) {
            errno = e;
            perror("bareloop: posix_spawn");
        }
    } else if (mode == M_LAUNCH) {
        /* The child gets a copy of the descriptor table at clone (no
         * CLONE_FILES), so closing the connection below is safe at once. */
        int k = launch_slot();
        pid = clone(launch_child, launch_stack[k] + LAUNCH_STACK,
                    CLONE_VM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD, (void *)(long)c,
                    (pid_t *)&launch_tid[k], NULL, (pid_t *)&launch_tid[k]);
        if (pid < 0)
            perror("bareloop: clone");
    } else {
        pid = mode == M_VFORK ? vfork() : fork();
        if (pid == 0) {
            /* the connection is SOCK_CLOEXEC; its dup2 copies are not */
            dup2(c, 0);
            dup2(c, 1);
            if (event_loop) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
            }
            execve(child_argv[0], child_argv, child_envp);
            _exit(127);
        }
        if (pid < 0)
            perror("bareloop: fork");
    }
    close(c);
    if (!event_loop)
        reap();
}

/* -e: accepts up to BATCH connections from one listener before the others
 * (and the signalfd) get a turn, as spawnd does. Returns whether it stopped
 * with connections possibly still waiting. */
enum { BATCH = 64 };

static int accept_batch(int fd)
{
    for (int taken = 0; taken < BATCH;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            serve(c);
            taken++;
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN) {
            /* out of descriptors: reap, rest, and look again next turn */
            reap();
            usleep(1000);
            return 1;
        }
        return 0;
    }
    return 1;
}

/* -e: the shape of spawnd's loop, with none of its work. An edge-triggered
 * listener left with connections waiting is not reported again, so it is
 * served next turn without waiting for an event. */
static void serve_event_loop(int ep, int sfd, int nlisteners)
{
    struct epoll_event evs[64];
    int *again = calloc(nlisteners, sizeof *again), *turn = calloc(nlisteners, sizeof *turn);
    if (!again || !turn)
        die("calloc");
    int nagain = 0;
    for (;;) {
        int n = epoll_wait(ep, evs, 64, nagain ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        int nturn = nagain;
        memcpy(turn, again, nagain * sizeof *again);
        nagain = 0;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sfd) {
                struct signalfd_siginfo info[8];
                while (read(sfd, info, sizeof info) == (ssize_t)sizeof info)
                    ;
                reap();
                continue;
            }
            int seen = 0;
            for (int k = 0; k < nturn && !seen; k++)
                seen = turn[k] == fd;
            if (!seen)
                turn[nturn++] = fd;
        }
        for (int k = 0; k < nturn; k++)
            if (accept_batch(turn[k]))
                again[nagain++] = turn[k];
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bareloop [-m vfork|fork|spawn|launch] [-a 127.0.0.1] [-p PORT] [-n NPORTS] "
                    "[-x EXTRA] [-b BACKLOG] [-s] [-e] -- PROG [ARG...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr_s = "127.0.0.1";
    int port = 20000, nports = 1, extra = 0, backlog = 128, opt;
    while ((opt = getopt(argc, argv, "m:a:p:n:x:b:se")) != -1) {
        switch (opt) {
        case 'm':
            if (!strcmp(optarg, "vfork"))
                mode = M_VFORK;
            else if (!strcmp(optarg, "fork"))
                mode = M_FORK;
            else if (!strcmp(optarg, "launch"))
                mode = M_LAUNCH;
            else if (!strcmp(optarg, "spawn") || !strcmp(optarg, "posix_spawn"))
                mode = M_SPAWN;
            else
                usage();
            break;
        case 'a': addr_s = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': nports = atoi(optarg); break;
        case 'x': extra = atoi(optarg); break;
        case 'b': backlog = atoi(optarg); break;
        case 's': shared_table = 1; break;
        case 'e': event_loop = 1; break;
        default: usage();
        }
    }
    if (optind >= argc || argv[optind][0] != '/' || nports < 1 || port < 1 || port + nports - 1 > 65535)
        usage();
    child_argv = &argv[optind];

    struct in_addr addr;
    if (inet_pton(AF_INET, addr_s, &addr) != 1 || (ntohl(addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "bareloop: %s is not an IPv4 loopback address\n", addr_s);
        return 2;
    }

    /* fds 0-2 must be taken so a connection never lands on 0 or 1 */
    for (int fd; (fd = open("/dev/null", O_RDWR)) <= 2;)
        if (fd < 0)
            die("/dev/null");

    if (shared_table && mode != M_VFORK && mode != M_LAUNCH) {
        fprintf(stderr, "bareloop: -s goes with -m vfork or -m launch\n");
        return 2;
    }
    /* -s: the pairs first, at the bottom of the table where the child keeps
     * them; then hold the next descriptor while the listeners are opened, so
     * that each connection lands just above what the child keeps. */
    int reserved = -1;
    if (shared_table) {
        wait_stack = map_stack();
        if (mode == M_LAUNCH) {
            long cpus = sysconf(_SC_NPROCESSORS_ONLN);
            nlaunch = cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
            for (int k = 0; k < nlaunch; k++) {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
                    die("socketpair");
                pair_loop[k] = sv[0];
                pair_child[k] = sv[1];
                keep_below = sv[1] + 1 > keep_below ? sv[1] + 1 : keep_below;
            }
        }
        reserved = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (reserved < 0)
            die("/dev/null");
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(nports + extra + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    struct in_addr any_lo;
    inet_pton(AF_INET, "127.0.0.1", &any_lo);
    for (int i = 0; i < extra; i++)
        listen_on(any_lo, 0, 16, 0);

    if (event_loop && mode != M_VFORK && mode != M_LAUNCH) {
        fprintf(stderr, "bareloop: -e goes with -m vfork or -m launch\n");
        return 2;
    }

    if (nports == 1 && !event_loop) {
        int l = listen_on(addr, port, backlog, 0);
        if (reserved >= 0)
            close(reserved);
        for (;;) {
            int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    reap();
                    usleep(1000);
                    continue;
                }
                die("accept4");
            }
            serve(c);
        }
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < nports; i++) {
        int l = listen_on(addr, port + i, backlog, 1);
        struct epoll_event ev = {.events = EPOLLIN | (event_loop ? EPOLLET : 0), .data.fd = l};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
            die("epoll_ctl");
    }
    if (event_loop) {
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
            die("sigprocmask");
        int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd < 0)
            die("signalfd");
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = sfd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
            die("epoll_ctl");
        if (reserved >= 0)
            close(reserved);
        serve_event_loop(ep, sfd, nports); /* never returns */
    }
    if (reserved >= 0)
        close(reserved);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            for (;;) {
                int c = accept4(evs[i].data.fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                    break; /* EAGAIN, or an error: level-triggered epoll retries */
                serve(c);
            }
        }
    }
}
