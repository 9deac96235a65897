/*
 * relayload: the client side of the relay benchmark. Prints one JSON line.
 *
 *   stream -p PORT -c N -d SECS [-w SECS]
 *       N connections to a relay in front of the backend's source port,
 *       one thread each, reading into a 256 KiB buffer; bytes counted
 *       after the warm-up: {"bytes":..,"secs":..,"gbps":..}
 *   echo -p PORT -c N -d SECS [-w SECS] [-b BYTES]
 *       N threads, each in a loop: connect, send BYTES (100), read them
 *       back, check, close (no half-close: not every peer passes one on;
 *       the tests check spawnd's); latency of each:
 *       {"conns":..,"secs":..,"rate":..,"p50_us":..,"p99_us":..,"errors":..}
 *   burst -p PORT -n N
 *       opens N connections one after the other and holds them, then sends
 *       one byte on each and reads it back (each was accepted and is
 *       served): {"n":..,"connect_secs":..,"secs":..,"errors":..}
 *   hold -p PORT -n N
 *       as burst, then prints its line and holds the connections until
 *       stdin closes (the driver measures the relay's memory meanwhile)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int port, conc = 1, nconns = 2000, payload = 100;
static double duration = 3, warmup = 0.5;
static volatile int measuring, stopping;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int connect_once(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

struct worker {
	pthread_t t;
	uint64_t bytes, conns, errors;
	double *lat;
	size_t nlat, caplat;
};

static void *stream_worker(void *arg)
{
	struct worker *w = arg;
	static __thread char buf[256 * 1024];
	int fd = connect_once();
	if (fd < 0) {
		w->errors++;
		return NULL;
	}
	while (!stopping) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0) {
			w->errors++;
			break;
		}
		if (measuring)
			w->bytes += n;
	}
	close(fd);
	return NULL;
}

static void *echo_worker(void *arg)
{
	struct worker *w = arg;
	char out[65536], in[65536];
	memset(out, 'e', payload);
	while (!stopping) {
		double t0 = now();
		int fd = connect_once();
		int ok = 0;
		if (fd >= 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			if (write(fd, out, payload) == payload) {
				int got = 0;
				ssize_t n = 1;
				while (got < payload && (n = read(fd, in + got, payload - got)) > 0)
					got += n;
				ok = got == payload && memcmp(in, out, payload) == 0;
			}
			close(fd);
		}
		if (!measuring)
			continue;
		if (!ok) {
			w->errors++;
			usleep(1000);
			continue;
		}
		w->conns++;
		if (w->nlat == w->caplat) {
			w->caplat = w->caplat ? w->caplat * 2 : 65536;
			w->lat = realloc(w->lat, w->caplat * sizeof *w->lat);
		}
		w->lat[w->nlat++] = now() - t0;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void run_threads(void *(*fn)(void *), struct worker *ws, double *secs)
{
	for (int i = 0; i < conc; i++)
		pthread_create(&ws[i].t, NULL, fn, &ws[i]);
	usleep((useconds_t)(warmup * 1e6));
	double t0 = now();
	measuring = 1;
	usleep((useconds_t)(duration * 1e6));
	measuring = 0;
	*secs = now() - t0;
	stopping = 1;
	for (int i = 0; i < conc; i++)
		pthread_join(ws[i].t, NULL);
}

static int burst(int hold)
{
	int *fds = calloc(nconns, sizeof *fds);
	int errors = 0;
	double t0 = now();
	for (int i = 0; i < nconns; i++) {
		fds[i] = connect_once();
		if (fds[i] < 0)
			errors++;
	}
	double connected = now();
	for (int i = 0; i < nconns; i++) {
		char c = 'b';
		if (fds[i] < 0)
			continue;
		if (write(fds[i], &c, 1) != 1 || read(fds[i], &c, 1) != 1 || c != 'b')
			errors++;
	}
	double done = now();
	printf("{\"n\":%d,\"connect_secs\":%.4f,\"secs\":%.4f,\"errors\":%d}\n", nconns, connected - t0,
	       done - t0, errors);
	fflush(stdout);
	if (hold) {
		char c;
		while (read(0, &c, 1) > 0) {
		}
	}
	for (int i = 0; i < nconns; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: relayload stream|echo|burst|hold -p PORT ...\n");
		return 2;
	}
	const char *mode = argv[1];
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "p:c:d:w:b:n:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'b': payload = atoi(optarg); break;
		case 'n': nconns = atoi(optarg); break;
		default: return 2;
		}
	}
	if (payload < 1 || payload > 65536)
		return 2;
	struct rlimit rl = {1 << 20, 1 << 20};
	setrlimit(RLIMIT_NOFILE, &rl);
	if (!strcmp(mode, "burst") || !strcmp(mode, "hold"))
		return burst(!strcmp(mode, "hold"));
	struct worker *ws = calloc(conc, sizeof *ws);
	double secs;
	if (!strcmp(mode, "stream")) {
		run_threads(stream_worker, ws, &secs);
		uint64_t bytes = 0, errors = 0;
		for (int i = 0; i < conc; i++) {
			bytes += ws[i].bytes;
			errors += ws[i].errors;
		}
		printf("{\"bytes\":%llu,\"secs\":%.4f,\"gbps\":%.4f,\"errors\":%llu}\n", (unsigned long long)bytes,
		       secs, bytes / secs / 1e9, (unsigned long long)errors);
		return 0;
	}
	run_threads(echo_worker, ws, &secs);
	uint64_t conns = 0, errors = 0;
	size_t total = 0;
	for (int i = 0; i < conc; i++) {
		conns += ws[i].conns;
		errors += ws[i].errors;
		total += ws[i].nlat;
	}
	double *all = malloc((total + 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < conc; i++)
		for (size_t j = 0; j < ws[i].nlat; j++)
			all[k++] = ws[i].lat[j];
	qsort(all, total, sizeof *all, cmp);
	double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)(total * 0.99)] : 0;
	printf("{\"conns\":%llu,\"secs\":%.4f,\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"errors\":%llu}\n",
	       (unsigned long long)conns, secs, conns / secs, p50 * 1e6, p99 * 1e6, (unsigned long long)errors);
	return 0;
}
