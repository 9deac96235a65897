/*
 * crelay: the reference TCP relay the relay benchmark measures spawnd's
 * `redirect` against. One thread, one edge-triggered epoll, as little work
 * per connection and per byte as a relay can do:
 *
 *   accept4(SOCK_NONBLOCK) -> socket + non-blocking connect -> both sides in
 *   epoll (IN|OUT|RDHUP, edge-triggered) -> the connect is done at the first
 *   EPOLLOUT (SO_ERROR read only if an error came with it) -> bytes move
 *   while both ends allow -> close (no EPOLL_CTL_DEL: closing does it).
 *
 *   -m splice  splice(2) through a pipe taken from a pool for the bytes in
 *              flight and given back when the receiver took them all; read
 *              until EAGAIN (a short splice may only mean the pipe is full)
 *   -m copy    read/write through a 64 KiB buffer taken from a pool the same
 *              way; a short read means the socket is drained
 *   -p BYTES   splice: pipes of that size (F_SETPIPE_SZ), reads of as much
 *              (default: the kernel's 64 KiB pipes)
 *
 * Half-close is passed on (shutdown(SHUT_WR) once a side's EOF and
 * everything before it is written); an error on either side closes both.
 *
 * usage: crelay -m splice|copy [-p BYTES] -l PORT -t PORT [-l PORT -t PORT ...]
 * Listens on 127.0.0.1:PORT and relays to 127.0.0.1:TARGET.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 65536
#define POOL_MAX 64

struct flow {
	int pipe_r, pipe_w; /* -1 when none */
	char *buf;          /* copy mode: held bytes */
	size_t off, len;    /* held: in the pipe (len) or buf[off..len] */
	int eof;
};

struct conn;
struct side {
	struct conn *c;
	int idx; /* 0 client, 1 upstream */
	int fd;
	int readable, writable, trouble;
	int read_closed; /* the peer's end was reported: read on to it */
};

struct conn {
	struct side s[2];
	struct flow f[2]; /* 0: client->upstream, 1: upstream->client */
	int connected, shut[2], dead;
	struct conn *next_dead;
};

struct listener {
	int fd, target_port;
	int is_listener; /* first field after fd-like data: tag */
};

static int splice_mode = 1;
static int pipe_size = CHUNK;
static int ep;
static int pipes[POOL_MAX][2], npipes;
static char *bufs[POOL_MAX];
static int nbufs;
static struct conn *dead_list;

static int get_pipe(int p[2])
{
	if (npipes > 0) {
		npipes--;
		p[0] = pipes[npipes][0];
		p[1] = pipes[npipes][1];
		return 0;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	if (pipe_size != CHUNK)
		fcntl(p[1], F_SETPIPE_SZ, pipe_size);
	return 0;
}

static void put_pipe(int r, int w)
{
	if (npipes < POOL_MAX) {
		pipes[npipes][0] = r;
		pipes[npipes][1] = w;
		npipes++;
	} else {
		close(r);
		close(w);
	}
}

static char *get_buf(void)
{
	if (nbufs > 0)
		return bufs[--nbufs];
	return malloc(CHUNK);
}

static void put_buf(char *b)
{
	if (nbufs < POOL_MAX)
		bufs[nbufs++] = b;
	else
		free(b);
}

static void kill_conn(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	for (int i = 0; i < 2; i++) {
		close(c->s[i].fd);
		if (c->f[i].pipe_r >= 0) {
			close(c->f[i].pipe_r);
			close(c->f[i].pipe_w);
		}
		if (c->f[i].buf)
			put_buf(c->f[i].buf);
	}
	/* Freed after the event batch: later events of it may still come. */
	c->next_dead = dead_list;
	dead_list = c;
}

/* Writes held bytes; -1 on error. */
static int write_held(struct flow *f, struct side *to)
{
	if (f->len == 0 || !to->writable)
		return 0;
	if (f->pipe_r >= 0) {
		ssize_t n = splice(f->pipe_r, NULL, to->fd, NULL, f->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN) {
				to->writable = 0;
				return 0;
			}
			return -1;
		}
		f->len -= n;
		if (f->len == 0) {
			put_pipe(f->pipe_r, f->pipe_w);
			f->pipe_r = f->pipe_w = -1;
		} else {
			to->writable = 0;
		}
		return 0;
	}
	while (f->off < f->len) {
		ssize_t n = send(to->fd, f->buf + f->off, f->len - f->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN) {
				to->writable = 0;
				return 0;
			}
			return -1;
		}
		f->off += n;
	}
	put_buf(f->buf);
	f->buf = NULL;
	f->off = f->len = 0;
	return 0;
}

/* Moves bytes from `from` to `to` until one of them blocks; -1 on error. */
static int run_flow(struct flow *f, struct side *from, struct side *to)
{
	for (;;) {
		if (write_held(f, to) < 0)
			return -1;
		if (f->len > 0 || f->eof || !from->readable)
			return 0;
		if (splice_mode) {
			int p[2];
			if (get_pipe(p) < 0)
				return -1;
			ssize_t n = splice(from->fd, NULL, p[1], NULL, pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n <= 0) {
				put_pipe(p[0], p[1]);
				if (n == 0) {
					f->eof = 1;
					return 0;
				}
				if (errno == EAGAIN) {
					from->readable = 0;
					return 0;
				}
				return -1;
			}
			f->pipe_r = p[0];
			f->pipe_w = p[1];
			f->len = n;
		} else {
			char *b = get_buf();
			ssize_t n = read(from->fd, b, CHUNK);
			if (n <= 0) {
				put_buf(b);
				if (n == 0) {
					f->eof = 1;
					return 0;
				}
				if (errno == EAGAIN) {
					from->readable = 0;
					return 0;
				}
				return -1;
			}
			if (n < CHUNK && !from->read_closed)
				from->readable = 0; /* drained */
			f->buf = b;
			f->off = 0;
			f->len = n;
		}
	}
}

static void serve(struct conn *c)
{
	if (!c->connected) {
		struct side *up = &c->s[1];
		if (up->trouble) {
			int err = 0;
			socklen_t l = sizeof err;
			if (getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
				kill_conn(c);
				return;
			}
		}
		if (!up->writable)
			return;
		c->connected = 1;
	}
	if (run_flow(&c->f[0], &c->s[0], &c->s[1]) < 0 || run_flow(&c->f[1], &c->s[1], &c->s[0]) < 0) {
		kill_conn(c);
		return;
	}
	for (int i = 0; i < 2; i++) {
		if (c->f[i].eof && c->f[i].len == 0 && !c->shut[i]) {
			c->shut[i] = 1;
			shutdown(c->s[1 - i].fd, SHUT_WR);
		}
	}
	if (c->shut[0] && c->shut[1])
		kill_conn(c);
}

static void accept_all(struct listener *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(l->target_port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (up < 0 || (connect(up, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)) {
			close(fd);
			if (up >= 0)
				close(up);
			continue;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			close(up);
			continue;
		}
		int fds[2] = {fd, up};
		for (int i = 0; i < 2; i++) {
			c->s[i].c = c;
			c->s[i].idx = i;
			c->s[i].fd = fds[i];
			c->f[i].pipe_r = c->f[i].pipe_w = -1;
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->s[i]};
			epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
		}
	}
}

int main(int argc, char **argv)
{
	struct listener ls[8];
	int nl = 0, opt;
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	while ((opt = getopt(argc, argv, "m:p:l:t:")) != -1) {
		if (opt == 'm') {
			splice_mode = strcmp(optarg, "splice") == 0;
		} else if (opt == 'p') {
			pipe_size = atoi(optarg);
		} else if (opt == 'l' && nl < 8) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(optarg))};
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, -1) < 0) {
				perror("bind");
				return 1;
			}
			ls[nl].fd = fd;
			ls[nl].is_listener = 1;
			nl++;
		} else if (opt == 't' && nl > 0) {
			ls[nl - 1].target_port = atoi(optarg);
		} else {
			fprintf(stderr, "usage: crelay -m splice|copy -l PORT -t PORT ...\n");
			return 2;
		}
	}
	/* Listeners are told apart from sides by a NULL-conn marker: their
	 * epoll data is the listener pointer with the low bit set. */
	for (int i = 0; i < nl; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = (uintptr_t)&ls[i] | 1};
		epoll_ctl(ep, EPOLL_CTL_ADD, ls[i].fd, &ev);
	}
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d & 1) {
				accept_all((struct listener *)(uintptr_t)(d & ~(uint64_t)1));
				continue;
			}
			struct side *s = evs[i].data.ptr;
			if (s->c->dead)
				continue;
			uint32_t e = evs[i].events;
			int trouble = (e & (EPOLLERR | EPOLLHUP)) != 0;
			s->readable |= (e & (EPOLLIN | EPOLLRDHUP)) || trouble;
			s->writable |= (e & EPOLLOUT) || trouble;
			s->trouble |= trouble;
			s->read_closed |= (e & EPOLLRDHUP) || trouble;
			serve(s->c);
		}
		while (dead_list) {
			struct conn *c = dead_list;
			dead_list = c->next_dead;
			free(c);
		}
	}
}
