/*
 * backend: the server behind every relay of the relay benchmark, the same
 * for all of them. One thread, one edge-triggered epoll, two ports on
 * 127.0.0.1:
 *
 *   -e PORT  echo: what a client sends comes back, until its EOF, then EOF
 *   -s PORT  source: sends bytes (from one static block) as fast as the
 *            client takes them, until the client goes away
 *
 * usage: backend -e PORT -s PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BLOCK (256 * 1024)

enum kind { LISTEN_ECHO, LISTEN_SOURCE, ECHO, SOURCE };

struct conn {
	enum kind kind;
	int fd;
	char buf[16384]; /* echo: bytes not written back yet */
	size_t off, len;
	int eof;
};

static char block[BLOCK];
static int ep;

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, -1) < 0) {
		perror("backend: bind");
		exit(1);
	}
	return fd;
}

static void add(struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void finish(struct conn *c)
{
	close(c->fd);
	free(c);
}

/* Returns 0 when the connection is done. */
static int echo(struct conn *c)
{
	for (;;) {
		while (c->off < c->len) {
			ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN;
			c->off += n;
		}
		c->off = c->len = 0;
		if (c->eof) {
			shutdown(c->fd, SHUT_WR);
			return 0;
		}
		ssize_t n = read(c->fd, c->buf, sizeof c->buf);
		if (n == 0)
			c->eof = 1;
		else if (n < 0)
			return errno == EAGAIN;
		else
			c->len = n;
	}
}

static int source(struct conn *c)
{
	for (;;) {
		ssize_t n = send(c->fd, block, BLOCK, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN;
	}
}

int main(int argc, char **argv)
{
	int opt;
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	memset(block, 'x', sizeof block);
	while ((opt = getopt(argc, argv, "e:s:")) != -1) {
		struct conn *l = calloc(1, sizeof *l);
		l->kind = opt == 'e' ? LISTEN_ECHO : LISTEN_SOURCE;
		l->fd = listen_on(atoi(optarg));
		add(l, EPOLLIN);
	}
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->kind == LISTEN_ECHO || c->kind == LISTEN_SOURCE) {
				int fd;
				while ((fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct conn *k = malloc(sizeof *k);
					if (!k) {
						close(fd);
						continue;
					}
					k->kind = c->kind == LISTEN_ECHO ? ECHO : SOURCE;
					k->fd = fd;
					k->off = k->len = 0;
					k->eof = 0;
					add(k, k->kind == ECHO ? EPOLLIN | EPOLLOUT | EPOLLRDHUP : EPOLLOUT | EPOLLRDHUP);
				}
				continue;
			}
			int alive = c->kind == ECHO ? echo(c) : source(c);
			if (!alive || (c->kind == SOURCE && (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))))
				finish(c);
		}
	}
}
