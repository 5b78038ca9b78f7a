/*
 * The floor for benches/ifup.rs: the fewest system calls that do kvmnet's job,
 * with raw libc calls and no runtime, so that "kernel + exec" is all it costs.
 *
 *   floor attach TAP BRIDGE   make an existing TAP up, give it BRIDGE's MTU
 *                             and make it a port of BRIDGE
 *   floor create TAP BRIDGE   the same, creating TAP as a persistent tap first
 *   floor delete TAP          delete TAP
 *
 * attach: RTM_GETLINK BRIDGE by name (its index and MTU are needed), then one
 * RTM_SETLINK addressed by TAP's name (MTU + IFF_UP + IFLA_MASTER) and its ack.
 * create: open /dev/net/tun, TUNSETIFF(IFF_TAP|IFF_NO_PI), TUNSETPERSIST, close,
 * then as attach. delete: one RTM_DELLINK by name and its ack.
 *
 * Unlike kvmnet it does not look the tap up first (kvmnet must: it checks that
 * the name is a tap and reads its record, MTU and MAC), sets no owner, MAC or
 * alias, and has no rollback. Compiled by the bench with `cc -O2`.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct req {
	struct nlmsghdr n;
	struct ifinfomsg i;
	char attrs[128];
};

/* Large enough for RTM_NEWLINK of a bridge with all its stats (~2 KB). */
static char reply[16384];
static int nl;

static int fail(const char *what, int err)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(err));
	return 1;
}

static void put_attr(struct req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)&r->n + NLMSG_ALIGN(r->n.nlmsg_len));
	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->n.nlmsg_len = NLMSG_ALIGN(r->n.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static void start(struct req *r, unsigned short type, unsigned short flags, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	r->n.nlmsg_type = type;
	r->n.nlmsg_flags = NLM_F_REQUEST | flags;
	r->n.nlmsg_seq = 1;
	r->i.ifi_family = AF_UNSPEC;
	put_attr(r, IFLA_IFNAME, name, strlen(name) + 1);
}

/* Sends one request and reads its one reply: 0, or a positive errno. */
static int talk(struct req *r)
{
	if (send(nl, r, r->n.nlmsg_len, 0) < 0)
		return errno;
	ssize_t len = recv(nl, reply, sizeof(reply), 0);
	if (len < 0)
		return errno;
	struct nlmsghdr *h = (struct nlmsghdr *)reply;
	if ((size_t)len < sizeof(*h) || !NLMSG_OK(h, (size_t)len))
		return EPROTO;
	if (h->nlmsg_type == NLMSG_ERROR)
		return -((struct nlmsgerr *)NLMSG_DATA(h))->error;
	return 0;
}

static int attach(const char *tap, const char *bridge)
{
	struct req r;
	start(&r, RTM_GETLINK, 0, bridge);
	int err = talk(&r);
	if (err)
		return fail(bridge, err);
	struct nlmsghdr *h = (struct nlmsghdr *)reply;
	if (h->nlmsg_type != RTM_NEWLINK)
		return fail(bridge, EPROTO);
	struct ifinfomsg *info = NLMSG_DATA(h);
	int master = info->ifi_index;
	unsigned int mtu = 0;
	int left = IFLA_PAYLOAD(h);
	for (struct rtattr *a = IFLA_RTA(info); RTA_OK(a, left); a = RTA_NEXT(a, left))
		if (a->rta_type == IFLA_MTU)
			memcpy(&mtu, RTA_DATA(a), sizeof(mtu));
	if (!mtu)
		return fail(bridge, EPROTO);

	start(&r, RTM_SETLINK, NLM_F_ACK, tap);
	r.i.ifi_flags = IFF_UP;
	r.i.ifi_change = IFF_UP;
	put_attr(&r, IFLA_MTU, &mtu, sizeof(mtu));
	put_attr(&r, IFLA_MASTER, &master, sizeof(master));
	err = talk(&r);
	return err ? fail(tap, err) : 0;
}

static int create(const char *tap)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("/dev/net/tun", errno);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strncpy(ifr.ifr_name, tap, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return fail("TUNSETIFF", errno);
	if (ioctl(fd, TUNSETPERSIST, 1) < 0)
		return fail("TUNSETPERSIST", errno);
	close(fd);
	return 0;
}

static int delete(const char *tap)
{
	struct req r;
	start(&r, RTM_DELLINK, NLM_F_ACK, tap);
	int err = talk(&r);
	return err ? fail(tap, err) : 0;
}

int main(int argc, char **argv)
{
	const char *op = argc > 1 ? argv[1] : "";
	int del = !strcmp(op, "delete");
	int link = !strcmp(op, "attach") || !strcmp(op, "create");
	if (!((del && argc == 3) || (link && argc == 4)) || strlen(argv[2]) >= IFNAMSIZ ||
	    (link && strlen(argv[3]) >= IFNAMSIZ)) {
		fputs("usage: floor attach|create TAP BRIDGE | floor delete TAP\n", stderr);
		return 2;
	}
	if (!strcmp(op, "create") && create(argv[2]))
		return 1;
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl < 0)
		return fail("netlink socket", errno);
	return del ? delete(argv[2]) : attach(argv[2], argv[3]);
}
