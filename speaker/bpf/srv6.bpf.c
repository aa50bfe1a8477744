// SPDX-License-Identifier: GPL-2.0
/*
 * flatroute's SRv6 datapath at tc (clsact) ingress, for kernels without seg6 lwtunnels.
 *
 *   flr_encap  tc ingress of a pod's host veth: H.Encaps / H.Encaps.Red (RFC 8986 5.1, 5.2)
 *              for inner destinations found in the LPM tries flr_enc4 / flr_enc6.
 *   flr_sid    tc ingress of an uplink: End, End.DX4/DT4/DT6/DX6/DT46 (RFC 8986 4.1, 4.4-4.8)
 *              for SIDs of the hash flr_sids; uSIDs (RFC 9800 NEXT-C-SID, F3216) for the
 *              prefixes of the LPM trie flr_usids: uN (End with the NEXT-C-SID flavour: shift
 *              the container past the uSID and forward; at the end of the container, the next
 *              segment), uA (the same, then forward to the neighbour given), uDT4/uDT6/uDT46
 *              (decapsulate); a packet to an unknown SID inside one of the locators of
 *              flr_locs is dropped (no_sid).
 *
 * The bytes on the wire are those of Linux's seg6 lwtunnel (tests/netns/bpf/test_bpf_vs_kernel.py
 * compares them field by field): the inner packet untouched; outer IPv6 over IPv4 with traffic
 * class 0 and hop limit 63, over IPv6 with the inner traffic class and the inner hop limit less
 * one (the outer packet is forwarded once); flow label from the flow hash, as with
 * net.ipv6.seg6_flowlabel=1; SRH (RFC 8754) with the segment list in reverse travel order.
 *
 * Map layouts are mirrored by speaker/bpf/maps.py: change both together.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10

#define NH_ICMP 1
#define NH_IPIP 4
#define NH_TCP 6
#define NH_UDP 17
#define NH_IPV6 41
#define NH_ROUTING 43
#define NH_ICMPV6 58
#define SRH_TYPE 4

#define MAX_SEGMENTS 6
#define IP6_HLEN 40
#define SRH_FIXED 8
#define HOP_LIMIT 64

#define MODE_ENCAP 1
#define MODE_ENCAP_RED 2

#define BEH_END 1
#define BEH_DX4 2
#define BEH_DT4 3
#define BEH_DT6 4
#define BEH_DT46 5
#define BEH_DX6 6
#define BEH_UN 7
#define BEH_UA 8
#define BEH_UDT4 9
#define BEH_UDT6 10
#define BEH_UDT46 11

#define USID_BLOCK_BYTES 4                /* F3216: a 32-bit locator block */

/* Counter indexes: the order of COUNTERS in speaker/bpf/datapath.py. */
enum {
	C_NO_SID = 0,
	C_SL_MISMATCH,
	C_TOO_BIG,
	C_FIB_FAIL,
	C_ENCAP,
	C_DECAP,
	C_END,
	C_ERROR,
	C_USID_SHIFT,
	C_USID_END,
	C_MAX,
};
#define COUNTER_SLOTS 16

struct lpm4_key {
	__u32 plen;
	__u8 addr[4];
};

struct lpm6_key {
	__u32 plen;
	__u8 addr[16];
};

struct encap_val {
	__u8 mode;                        /* MODE_* */
	__u8 nseg;                        /* 1..MAX_SEGMENTS */
	__u8 pad[6];
	__u8 src[16];                     /* outer source */
	__u8 segs[MAX_SEGMENTS][16];      /* travel order: segs[0] is visited first */
};

struct sid_key {
	__u8 addr[16];
};

struct sid_val {
	__u32 behavior;                   /* BEH_* */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm4_key);
	__type(value, struct encap_val);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flr_enc4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm6_key);
	__type(value, struct encap_val);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flr_enc6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sid_key);
	__type(value, struct sid_val);
	__uint(max_entries, 4096);
} flr_sids SEC(".maps");

struct usid_val {
	__u32 behavior;                   /* BEH_UN, BEH_UA, BEH_UDT* */
	__u32 plen;                       /* the uSID's prefix length: 48, or 64 after a node ID */
	__u8 nh[16];                      /* uA: the neighbour's address */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm6_key);
	__type(value, __u32);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flr_locs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm6_key);
	__type(value, struct usid_val);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flr_usids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNTER_SLOTS);
} flr_cnt SEC(".maps");

/* Plain header layouts (no bitfields, no unions). */
struct flr_v4hdr {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct flr_v6hdr {
	__be32 vtcfl;                     /* version 4 bits, traffic class 8, flow label 20 */
	__be16 plen;
	__u8 nexthdr;
	__u8 hlim;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct flr_srhdr {
	__u8 nexthdr;
	__u8 hdrlen;                      /* 8-octet units, not counting the first 8 */
	__u8 type;
	__u8 sl;
	__u8 last;
	__u8 flags;
	__be16 tag;
};

struct flr_outer {
	struct flr_v6hdr ip;
	struct flr_srhdr srh;
};

struct flr_icmp4_err {
	struct flr_v4hdr ip;
	__u8 type;
	__u8 code;
	__u16 check;
	__be16 unused;
	__be16 mtu;
};

struct flr_icmp6_err {
	struct flr_v6hdr ip;
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 mtu;
};

struct flr_icmp6_pseudo {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 nexthdr;
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 mtu;
};

char LICENSE[] SEC("license") = "GPL";

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&flr_cnt, &idx);

	if (v)
		*v += 1;
}

static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

#define QCHUNK 16

/* Add the checksum of the q bytes quoted at `off` (q a multiple of QCHUNK, at most max) to
 * *acc, through direct packet access; -1 when they are not in the linear data. */
static __always_inline int csum_quote(struct __sk_buff *skb, __u32 off, __u32 q, __u32 max,
				      __u64 *acc)
{
	__u32 i;

	for (i = 0; i < max / QCHUNK; i++) {
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		__u8 *p = (__u8 *)data + off + i * QCHUNK;

		if (i * QCHUNK >= q)
			break;
		if ((void *)(p + QCHUNK) > data_end)
			return -1;
		*acc = bpf_csum_diff(0, 0, (__be32 *)p, QCHUNK, *acc);
	}
	return 0;
}

#define ICMP4_HL (sizeof(struct flr_icmp4_err))   /* 28 */
#define ICMP6_HL (sizeof(struct flr_icmp6_err))   /* 48 */
#define QUOTE4_MAX 544                        /* 576 - 28, rounded down to 16 */
#define QUOTE6_MAX 1232                       /* 1280 - 48 */

/*
 * Turn the packet into an ICMP "fragmentation needed" (IPv4) or ICMPv6 "packet too big"
 * quoting the start of the original packet, from the pod's link-local gateway, and send it
 * back out of the veth it came in on.
 */
static __always_inline int send_too_big(struct __sk_buff *skb, int v4, __u32 mtu)
{
	struct ethhdr eth;
	__u8 orig_src[16] = {};
	__u32 l3len = skb->len;
	__u32 hl, q;
	__u64 acc;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
	if (l3len < ETH_HLEN + 28)
		return TC_ACT_SHOT;
	l3len -= ETH_HLEN;
	if (v4) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, orig_src, 4))
			return TC_ACT_SHOT;
		hl = ICMP4_HL;
		q = l3len < QUOTE4_MAX ? l3len : QUOTE4_MAX;
	} else {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, orig_src, 16))
			return TC_ACT_SHOT;
		hl = ICMP6_HL;
		q = l3len < QUOTE6_MAX ? l3len : QUOTE6_MAX;
	}
	q &= ~(QCHUNK - 1);
	if (q > QUOTE6_MAX)
		return TC_ACT_SHOT;

	/* Room for the new IP + ICMP header in front of the original IP packet, which becomes the
	 * quote; then cut the quote to size. */
	if (bpf_skb_adjust_room(skb, hl, BPF_ADJ_ROOM_MAC, 0))
		goto err;
	if (bpf_skb_change_tail(skb, ETH_HLEN + hl + q, 0))
		goto err;
	if (bpf_skb_pull_data(skb, ETH_HLEN + hl + q))
		goto err;

	acc = 0;
	if (v4) {
		struct flr_icmp4_err h = {};

		h.ip.vihl = 0x45;
		h.ip.tos = 0xc0;
		h.ip.tot_len = bpf_htons(ICMP4_HL + q);
		h.ip.ttl = HOP_LIMIT;
		h.ip.protocol = NH_ICMP;
		h.ip.saddr = bpf_htonl(0xa9fe0101);       /* 169.254.1.1 */
		__builtin_memcpy(&h.ip.daddr, orig_src, 4);
		h.ip.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
		h.type = 3;
		h.code = 4;
		h.mtu = bpf_htons(mtu > 0xffff ? 0xffff : mtu);
		acc = bpf_csum_diff(0, 0, (__be32 *)&h.type, 8, 0);
		if (csum_quote(skb, ETH_HLEN + ICMP4_HL, q, QUOTE4_MAX, &acc))
			goto err;
		h.check = csum_fold(acc);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0))
			goto err;
	} else {
		struct flr_icmp6_err h = {};
		struct flr_icmp6_pseudo ph = {};

		h.ip.vtcfl = bpf_htonl(0x60000000);
		h.ip.plen = bpf_htons(8 + q);
		h.ip.nexthdr = NH_ICMPV6;
		h.ip.hlim = 255;
		h.ip.saddr[0] = 0xfe;                      /* fe80::1 */
		h.ip.saddr[1] = 0x80;
		h.ip.saddr[15] = 0x01;
		__builtin_memcpy(h.ip.daddr, orig_src, 16);
		h.type = 2;
		h.code = 0;
		h.mtu = bpf_htonl(mtu);
		__builtin_memcpy(ph.saddr, h.ip.saddr, 16);
		__builtin_memcpy(ph.daddr, h.ip.daddr, 16);
		ph.len = bpf_htonl(8 + q);
		ph.nexthdr = bpf_htonl(NH_ICMPV6);
		ph.type = h.type;
		ph.mtu = h.mtu;
		acc = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
		if (csum_quote(skb, ETH_HLEN + ICMP6_HL, q, QUOTE6_MAX, &acc))
			goto err;
		h.check = csum_fold(acc);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0))
			goto err;
	}
	/* Back to the pod: swap the MACs. */
	if (bpf_skb_store_bytes(skb, 0, eth.h_source, 6, 0) ||
	    bpf_skb_store_bytes(skb, 6, eth.h_dest, 6, 0))
		goto err;
	return bpf_redirect(skb->ifindex, 0);
err:
	count(C_ERROR);
	return TC_ACT_SHOT;
}

SEC("tc")
int flr_encap(struct __sk_buff *skb)
{
	__u32 proto = skb->protocol;
	__u32 skb_len = skb->len;
	__u32 gso_size = skb->gso_size;
	__u32 ifindex = skb->ifindex;
	struct encap_val *ev;
	struct bpf_fib_lookup fib = {};
	struct flr_outer o = {};
	__u32 l3len, l4off, seglen, n, entries, olen, tclass, t, hash, ohlim;
	__u8 inner_nh, l4proto;
	int v4, df = 0;
	long rc;

	/* the smallest inner packet is a bare IPv4 header: shorter ones are no IP at all */
	if (skb_len < ETH_HLEN + 20)
		return TC_ACT_OK;
	l3len = skb_len - ETH_HLEN;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct flr_v4hdr ip;
		struct lpm4_key k = { .plen = 32 };

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return TC_ACT_OK;
		if ((ip.vihl >> 4) != 4 || (ip.vihl & 0xf) < 5)
			return TC_ACT_OK;
		/* multicast and broadcast stay on the link */
		if ((bpf_ntohl(ip.daddr) >> 28) == 0xe || ip.daddr == 0xffffffff)
			return TC_ACT_OK;
		__builtin_memcpy(k.addr, &ip.daddr, 4);
		ev = bpf_map_lookup_elem(&flr_enc4, &k);
		if (!ev)
			return TC_ACT_OK;
		v4 = 1;
		inner_nh = NH_IPIP;
		/* as Linux's seg6 encap: traffic class 0 over IPv4, the outer hop limit that of a
		 * new packet, decremented once as the node forwards it */
		tclass = 0;
		ohlim = HOP_LIMIT - 1;
		df = (ip.frag_off & bpf_htons(0x4000)) != 0;
		l4proto = ip.protocol;
		l4off = ETH_HLEN + (ip.vihl & 0xf) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct flr_v6hdr ip;
		struct lpm6_key k = { .plen = 128 };

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return TC_ACT_OK;
		if ((bpf_ntohl(ip.vtcfl) >> 28) != 6)
			return TC_ACT_OK;
		/* multicast (neighbour discovery) and link-local stay on the link */
		if (ip.daddr[0] == 0xff || (ip.daddr[0] == 0xfe && (ip.daddr[1] & 0xc0) == 0x80))
			return TC_ACT_OK;
		__builtin_memcpy(k.addr, ip.daddr, 16);
		ev = bpf_map_lookup_elem(&flr_enc6, &k);
		if (!ev)
			return TC_ACT_OK;
		v4 = 0;
		inner_nh = NH_IPV6;
		/* as Linux's seg6 encap: the inner traffic class and (decremented) hop limit */
		tclass = (bpf_ntohl(ip.vtcfl) >> 20) & 0xff;
		ohlim = ip.hlim ? ip.hlim - 1 : 0;
		l4proto = ip.nexthdr;
		l4off = ETH_HLEN + IP6_HLEN;
	} else {
		return TC_ACT_OK;
	}

	n = ev->nseg;
	if (n < 1 || n > MAX_SEGMENTS) {
		count(C_ERROR);
		return TC_ACT_SHOT;
	}
	entries = ev->mode == MODE_ENCAP_RED ? n - 1 : n;
	olen = IP6_HLEN + (entries ? SRH_FIXED + 16 * entries : 0);

	/* Length of the largest packet the encapsulation puts on the wire: one segment of a GSO
	 * packet, else the packet itself. */
	seglen = l3len;
	if (gso_size) {
		__u32 l4hl = 0;

		if (l4proto == NH_TCP) {
			__u8 doff;

			if (bpf_skb_load_bytes(skb, l4off + 12, &doff, 1))
				return TC_ACT_OK;
			l4hl = (doff >> 4) * 4;
		} else if (l4proto == NH_UDP) {
			l4hl = 8;
		}
		seglen = l4off - ETH_HLEN + l4hl + gso_size;
	}
	seglen += olen;

	fib.family = AF_INET6;
	fib.ifindex = ifindex;
	fib.tot_len = seglen > 0xffff ? 0xffff : seglen;
	__builtin_memcpy(fib.ipv6_src, ev->src, 16);
	__builtin_memcpy(fib.ipv6_dst, ev->segs[0], 16);
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		__u32 mtu = fib.mtu_result;

		count(C_TOO_BIG);
		if (v4 && !df)
			return TC_ACT_SHOT;
		mtu = mtu > olen ? mtu - olen : 0;
		return send_too_big(skb, v4, mtu);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(C_FIB_FAIL);
		return TC_ACT_SHOT;
	}

	/* The inner packet is left as it is: Linux's seg6 encapsulates at route input, before any
	 * forwarding would decrement its TTL / hop limit (measured: test_bpf_vs_kernel.py). */
	hash = bpf_get_hash_recalc(skb);
	o.ip.vtcfl = bpf_htonl((6u << 28) | (tclass << 20) | (hash & 0xfffff));
	o.ip.plen = bpf_htons(l3len + olen - IP6_HLEN);
	o.ip.nexthdr = entries ? NH_ROUTING : inner_nh;
	o.ip.hlim = ohlim;
	__builtin_memcpy(o.ip.saddr, ev->src, 16);
	__builtin_memcpy(o.ip.daddr, ev->segs[0], 16);
	o.srh.nexthdr = inner_nh;
	o.srh.hdrlen = 2 * entries;
	o.srh.type = SRH_TYPE;
	o.srh.sl = n - 1;
	o.srh.last = entries ? entries - 1 : 0;

	barrier_var(olen);
	if (olen > IP6_HLEN + SRH_FIXED + 16 * MAX_SEGMENTS)
		goto err;
	if (bpf_skb_adjust_room(skb, olen, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO))
		goto err;
	if (entries) {
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(o), 0))
			goto err;
	} else {
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &o.ip, sizeof(o.ip), 0))
			goto err;
	}
	/* Segment list in reverse travel order: SRH[k] = segs[n-1-k]; H.Encaps.Red leaves the first
	 * segment (already the destination address) out. */
#pragma unroll
	for (t = 0; t < MAX_SEGMENTS; t++) {
		__u32 off;

		if (t >= n)
			break;
		if (t == 0 && ev->mode == MODE_ENCAP_RED)
			continue;
		off = ETH_HLEN + IP6_HLEN + SRH_FIXED + 16 * (n - 1 - t);
		if (bpf_skb_store_bytes(skb, off, ev->segs[t], 16, 0))
			goto err;
	}

	{
		__be16 p6 = bpf_htons(ETH_P_IPV6);

		if (bpf_skb_store_bytes(skb, 12, &p6, 2, 0))
			goto err;
	}
	count(C_ENCAP);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {};

		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, 6, 0) ||
	    bpf_skb_store_bytes(skb, 6, fib.smac, 6, 0))
		goto err;
	return bpf_redirect(fib.ifindex, 0);
err:
	count(C_ERROR);
	return TC_ACT_SHOT;
}

/*
 * End at an SRH: segments left less one, that segment in the destination address. The packet is
 * then forwarded on the new destination. 0, or -1 when the SRH does not allow it.
 */
static __always_inline int srh_next(struct __sk_buff *skb, struct flr_srhdr *srh)
{
	__u8 seg[16];
	__u32 sl;

	if (srh->sl == 0)
		return -1;
	sl = srh->sl - 1;
	if (sl > srh->last || (sl + 1) * 2 > srh->hdrlen)
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN + SRH_FIXED + 16 * sl, seg, 16))
		return -1;
	srh->sl = sl;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + IP6_HLEN + 3, &srh->sl, 1, 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + 24, seg, 16, 0))
		return -1;
	return 0;
}

/*
 * uA: forward to the neighbour `nh` out of the interface the FIB finds for it, the hop limit
 * decremented here as the kernel's forwarding would (a packet at its last hop goes to the
 * kernel, which answers time exceeded).
 */
static __always_inline int usid_adjacency(struct __sk_buff *skb, struct flr_v6hdr *ip, __u8 *nh)
{
	struct bpf_fib_lookup fib = {};
	__u8 hlim;
	long rc;

	if (ip->hlim <= 1)
		return TC_ACT_OK;
	fib.family = AF_INET6;
	fib.ifindex = skb->ifindex;
	fib.tot_len = skb->len - ETH_HLEN;
	__builtin_memcpy(fib.ipv6_src, ip->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, nh, 16);
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(C_FIB_FAIL);
		return TC_ACT_SHOT;
	}
	hlim = ip->hlim - 1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + 7, &hlim, 1, 0))
		goto err;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh n = {};

		n.nh_family = AF_INET6;
		__builtin_memcpy(n.ipv6_nh, nh, 16);
		return bpf_redirect_neigh(fib.ifindex, &n, sizeof(n), 0);
	}
	if (bpf_skb_store_bytes(skb, 0, fib.dmac, 6, 0) ||
	    bpf_skb_store_bytes(skb, 6, fib.smac, 6, 0))
		goto err;
	return bpf_redirect(fib.ifindex, 0);
err:
	count(C_ERROR);
	return TC_ACT_SHOT;
}

/*
 * uN and uA (RFC 9800 End and End.X with the NEXT-C-SID flavour, F3216): shift the uSIDs after
 * the block left past this one (16 bits, or 32 for a local function after the node ID), zeros
 * in; if uSIDs remain, forward on the new destination. At the end of the container, End on the
 * SRH: the next segment. With none left there is nothing to process: drop (usid_end).
 */
static __always_inline int usid_shift(struct __sk_buff *skb, struct flr_v6hdr *ip,
				      struct usid_val *uv, int has_srh, struct flr_srhdr *srh)
{
	__u8 da[16];
	__u32 i, k, rest = 0;

	if (uv->plen != 48 && uv->plen != 64)
		return -1;
	k = (uv->plen - 32) / 8;
	__builtin_memcpy(da, ip->daddr, 16);
#pragma unroll
	for (i = USID_BLOCK_BYTES; i < 16; i++) {
		__u32 j = i + k;

		da[i] = j < 16 ? ip->daddr[j & 15] : 0;
		rest |= da[i];
	}
	if (rest) {
		if (bpf_skb_store_bytes(skb, ETH_HLEN + 24, da, 16, 0))
			return -1;
		__builtin_memcpy(ip->daddr, da, 16);
		count(C_USID_SHIFT);
		return 0;
	}
	if (!has_srh || srh_next(skb, srh)) {
		count(C_USID_END);
		return -2;
	}
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 24, ip->daddr, 16))
		return -1;
	count(C_END);
	return 0;
}

SEC("tc")
int flr_sid(struct __sk_buff *skb)
{
	__u32 proto = skb->protocol;
	struct flr_v6hdr ip;
	struct flr_srhdr srh = {};
	struct sid_key sk;
	struct sid_val *sv;
	struct usid_val *uv = 0;
	__u32 beh, hlen, flags;
	__u8 nh;
	int has_srh;

	if (proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return TC_ACT_OK;
	__builtin_memcpy(sk.addr, ip.daddr, 16);
	sv = bpf_map_lookup_elem(&flr_sids, &sk);
	if (sv) {
		beh = sv->behavior;
	} else {
		struct lpm6_key k = { .plen = 128 };

		__builtin_memcpy(k.addr, ip.daddr, 16);
		uv = bpf_map_lookup_elem(&flr_usids, &k);
		if (!uv) {
			if (bpf_map_lookup_elem(&flr_locs, &k)) {
				count(C_NO_SID);
				return TC_ACT_SHOT;
			}
			return TC_ACT_OK;
		}
		beh = uv->behavior;
	}
	has_srh = ip.nexthdr == NH_ROUTING;
	if (has_srh) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + IP6_HLEN, &srh, sizeof(srh)))
			goto mismatch;
		if (srh.type != SRH_TYPE)
			goto mismatch;
	}

	if (beh == BEH_END) {
		if (!has_srh || srh_next(skb, &srh))
			goto mismatch;
		count(C_END);
		return TC_ACT_OK;
	}
	if ((beh == BEH_UN || beh == BEH_UA) && uv) {
		__u8 nbr[16];
		int rc;

		__builtin_memcpy(nbr, uv->nh, 16);
		rc = usid_shift(skb, &ip, uv, has_srh, &srh);
		if (rc == -2)
			return TC_ACT_SHOT;
		if (rc)
			goto mismatch;
		if (beh == BEH_UA)
			return usid_adjacency(skb, &ip, nbr);
		return TC_ACT_OK;
	}
	if (beh == BEH_UDT4)
		beh = BEH_DT4;
	else if (beh == BEH_UDT6)
		beh = BEH_DT6;
	else if (beh == BEH_UDT46)
		beh = BEH_DT46;

	if (has_srh) {
		if (srh.sl != 0)
			goto mismatch;
		nh = srh.nexthdr;
		hlen = IP6_HLEN + SRH_FIXED + srh.hdrlen * 8;
	} else {
		nh = ip.nexthdr;
		hlen = IP6_HLEN;
	}
	switch (beh) {
	case BEH_DX4:
	case BEH_DT4:
		if (nh != NH_IPIP)
			goto mismatch;
		break;
	case BEH_DT6:
	case BEH_DX6:
		if (nh != NH_IPV6)
			goto mismatch;
		break;
	case BEH_DT46:
		if (nh != NH_IPIP && nh != NH_IPV6)
			goto mismatch;
		break;
	default:
		goto mismatch;
	}
	flags = (nh == NH_IPIP ? BPF_F_ADJ_ROOM_DECAP_L3_IPV4 : BPF_F_ADJ_ROOM_DECAP_L3_IPV6) |
		BPF_F_ADJ_ROOM_FIXED_GSO;
	barrier_var(hlen);
	if (hlen > IP6_HLEN + SRH_FIXED + 255 * 8)
		goto mismatch;
	if (bpf_skb_adjust_room(skb, -(__s32)hlen, BPF_ADJ_ROOM_MAC, flags)) {
		count(C_ERROR);
		return TC_ACT_SHOT;
	}
	{
		__be16 p = bpf_htons(nh == NH_IPIP ? ETH_P_IP : ETH_P_IPV6);

		if (bpf_skb_store_bytes(skb, 12, &p, 2, 0)) {
			count(C_ERROR);
			return TC_ACT_SHOT;
		}
	}
	count(C_DECAP);
	return TC_ACT_OK;
mismatch:
	count(C_SL_MISMATCH);
	return TC_ACT_SHOT;
}
