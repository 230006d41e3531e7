// SPDX-License-Identifier: Apache-2.0
/*
 * Test program for the CRIU patch series (src/criu-patches): a process with a listening TCP socket and a
 * bound UDP socket (both on 127.0.0.1, kernel-chosen ports), which CRIU 4.1.1 cannot dump on Linux >= 6.16
 * without the SO_PASSCRED/SO_PASSSEC patch.
 *
 *   inet-sockets INFO   writes "<tcp port> <udp port>" to INFO, then serves: every UDP datagram counts one,
 *                       every TCP connection gets "pong <count> passcred <0|1>\n" and is closed. The
 *                       process also holds a unix socketpair with SO_PASSCRED set on one end: the option
 *                       must survive a dump/restore where the family has it (the "passcred" value).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int bound(int type, unsigned short *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, type, 0), one = 1;

	/* like real servers: the listener must rebind at restore while served connections sit in TIME_WAIT */
	if (fd >= 0 && type == SOCK_STREAM)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("socket/bind");
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

int main(int argc, char **argv)
{
	unsigned short tport, uport;
	unsigned long count = 0;
	char tmp[4096], buf[256];
	struct pollfd p[2];
	int sp[2], one = 1;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: %s INFO\n", argv[0]);
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) || setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one))) {
		perror("socketpair/SO_PASSCRED");
		return 1;
	}
	p[0].fd = bound(SOCK_STREAM, &tport);
	p[1].fd = bound(SOCK_DGRAM, &uport);
	if (p[0].fd < 0 || p[1].fd < 0 || listen(p[0].fd, 16)) {
		perror("listen");
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u %u\n", tport, uport) < 0 || fclose(f) || rename(tmp, argv[1])) {
		perror(argv[1]);
		return 1;
	}
	p[0].events = p[1].events = POLLIN;
	for (;;) {
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents & POLLIN) {
			if (recv(p[1].fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
				count++;
		}
		if (p[0].revents & POLLIN) {
			int c = accept(p[0].fd, NULL, NULL);

			if (c >= 0) {
				int pc = -1, n;
				socklen_t len = sizeof(pc);

				getsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &pc, &len);
				n = snprintf(buf, sizeof(buf), "pong %lu passcred %d\n", count, pc);

				if (write(c, buf, n) != n)
					perror("write");
				close(c);
			}
		}
	}
}
