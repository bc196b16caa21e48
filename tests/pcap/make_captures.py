#!/usr/bin/python3
"""Generates Sluice's golden pcap cases: input captures, per-case configs and expected outputs.

Run with Debian's /usr/bin/python3 (it has scapy 2.5 from python3-scapy):

    /usr/bin/python3 tests/pcap/make_captures.py OUTDIR [--case NAME]...

For every case it writes OUTDIR/NAME/{in.pcap, config.yaml, expected_to_client.pcap,
expected_to_server.pcap, case.json}. case.json holds the extra `sluice replay` arguments and the
expected counter values. Everything is deterministic: fixed seeds, fixed timestamps.

The expected outputs follow the replay contract: a packet that arrived on the client side and is
forwarded is written unchanged to TO_SERVER (and vice versa), with the input timestamp; RSTs that
Sluice emits when it kills a flow carry the timestamp of the offending packet. Which side a
packet arrived on is decided by the generator; `replay_sides` re-derives it from the capture the
way `sluice replay` does and the generator refuses to write a case where the two disagree.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import struct
import sys
from dataclasses import dataclass, field

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR, fragment
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                                ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6,
                                IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

BASE_TS_US = 1_714_521_600 * 1_000_000  # 2024-05-01T00:00:00Z
MOD32 = 1 << 32
CLIENT, SERVER = "client", "server"
TO_CLIENT, TO_SERVER = "to_client", "to_server"
SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("NOP", None),
               ("WScale", 7)]


# --------------------------------------------------------------------------------------------
# pcap files (classic libpcap format), written and read without scapy so timestamps stay exact
# --------------------------------------------------------------------------------------------

def write_pcap(path: str, records: list[tuple[int, bytes]]) -> None:
    """records: (timestamp in microseconds, frame bytes). Linktype Ethernet, microsecond pcap."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, data in records:
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
            f.write(data)


def read_pcap(path: str) -> tuple[int, list[tuple[int, bytes]]]:
    """Returns (linktype, [(timestamp in microseconds, frame bytes)]). Handles both byte orders
    and both microsecond and nanosecond pcaps (nanoseconds are truncated to microseconds)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for a pcap header")
    magic_le = struct.unpack_from("<I", blob)[0]
    magic_be = struct.unpack_from(">I", blob)[0]
    nanos = {0xA1B2C3D4: False, 0xA1B23C4D: True}  # microsecond / nanosecond pcap
    if magic_le in nanos:
        order, nano = "<", nanos[magic_le]
    elif magic_be in nanos:
        order, nano = ">", nanos[magic_be]
    else:
        raise ValueError(f"{path}: not a pcap file (magic {blob[:4].hex()})")
    linktype = struct.unpack_from(order + "I", blob, 20)[0] & 0x0FFFFFFF
    records = []
    offset = 24
    while offset < len(blob):
        if offset + 16 > len(blob):
            raise ValueError(f"{path}: truncated record header at byte {offset}")
        sec, frac, incl, _orig = struct.unpack_from(order + "IIII", blob, offset)
        offset += 16
        if offset + incl > len(blob):
            raise ValueError(f"{path}: truncated record at byte {offset}")
        usec = frac // 1000 if nano else frac
        records.append((sec * 1_000_000 + usec, blob[offset:offset + incl]))
        offset += incl
    return linktype, records


# --------------------------------------------------------------------------------------------
# what `sluice replay` does to find a packet's side, re-derived independently
# --------------------------------------------------------------------------------------------

@dataclass
class Parsed:
    src: str | None = None       # IP (or ARP sender protocol) address, as text
    dst: str | None = None
    tcp: bool = False
    sport: int = 0
    dport: int = 0
    flags: int = 0
    seq: int = 0
    payload_len: int = 0
    fragment: bool = False
    vlans: tuple = ()


def parse_frame(data: bytes) -> Parsed:
    p = Parsed()
    if len(data) < 14:
        return p
    off = 12
    etype = struct.unpack_from(">H", data, off)[0]
    while etype in (0x8100, 0x88A8, 0x9100):
        if off + 4 <= len(data):
            p.vlans += (struct.unpack_from(">H", data, off + 2)[0] & 0xFFF,)
        off += 4
        if off + 2 > len(data):
            return p
        etype = struct.unpack_from(">H", data, off)[0]
    l3 = off + 2
    if etype == 0x0806:
        if len(data) < l3 + 8:
            return p
        hlen, plen = data[l3 + 4], data[l3 + 5]
        if plen == 4 and len(data) >= l3 + 8 + 2 * hlen + 8:
            p.src = str(ipaddress.IPv4Address(data[l3 + 8 + hlen:l3 + 12 + hlen]))
        return p
    proto, l4, fragment_ = None, None, False
    if etype == 0x0800:
        if len(data) < l3 + 20 or data[l3] >> 4 != 4:
            return p
        p.src = str(ipaddress.IPv4Address(data[l3 + 12:l3 + 16]))
        p.dst = str(ipaddress.IPv4Address(data[l3 + 16:l3 + 20]))
        proto = data[l3 + 9]
        l4 = l3 + (data[l3] & 15) * 4
        l3_end = l3 + struct.unpack_from(">H", data, l3 + 2)[0]
        fragment_ = struct.unpack_from(">H", data, l3 + 6)[0] & 0x3FFF != 0
    elif etype == 0x86DD:
        if len(data) < l3 + 40:
            return p
        p.src = str(ipaddress.IPv6Address(data[l3 + 8:l3 + 24]))
        p.dst = str(ipaddress.IPv6Address(data[l3 + 24:l3 + 40]))
        nh, off6 = data[l3 + 6], l3 + 40
        l3_end = off6 + struct.unpack_from(">H", data, l3 + 4)[0]
        while nh in (0, 43, 60, 44, 51) and off6 + 8 <= len(data):
            if nh == 44:
                fragment_ = True
                break
            length = (data[off6 + 1] + 2) * 4 if nh == 51 else (data[off6 + 1] + 1) * 8
            nh, off6 = data[off6], off6 + length
        proto, l4 = nh, off6
    p.fragment = fragment_
    if proto == 6 and not fragment_ and l4 is not None and len(data) >= l4 + 14:
        p.tcp = True
        p.sport, p.dport = struct.unpack_from(">HH", data, l4)
        p.flags = data[l4 + 13]
        p.seq = struct.unpack_from(">I", data, l4 + 4)[0]
        p.payload_len = max(0, l3_end - l4 - (data[l4 + 12] >> 4) * 4)
    return p


def replay_sides(frames: list[bytes], tcp_ports: list[int], server_nets: list[str]) -> list[str]:
    """The side each frame arrived on, by the replay contract."""
    parsed = [parse_frame(f) for f in frames]
    nets = [ipaddress.ip_network(n) for n in server_nets]
    initiator: dict[tuple, tuple] = {}
    servers: set[str] = set()
    for p in parsed:
        if not p.tcp:
            continue
        a, b = (p.src, p.sport), (p.dst, p.dport)
        key = tuple(sorted([a, b]))
        if p.flags & 0x12 == 0x02 and key not in initiator:
            initiator[key] = a
        if p.flags & 0x12 == 0x12 and p.sport in tcp_ports:
            servers.add(p.src)
    sides = []
    for p in parsed:
        if p.tcp:
            key = tuple(sorted([(p.src, p.sport), (p.dst, p.dport)]))
            if key in initiator:
                sides.append(CLIENT if initiator[key] == (p.src, p.sport) else SERVER)
                continue
        if p.src is None:
            sides.append(CLIENT)
            continue
        addr = ipaddress.ip_address(p.src)
        on_server = p.src in servers or any(addr.version == n.version and addr in n for n in nets)
        sides.append(SERVER if on_server else CLIENT)
    return sides


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------

@dataclass
class Host:
    mac: str
    ip: str

    @property
    def v6(self) -> bool:
        return ":" in self.ip


def l2(src: Host, dst_mac: str, tags=()):
    """Ethernet + VLAN tags; tags: [(tpid, vid, pcp)], outer first."""
    pkt = Ether(src=src.mac, dst=dst_mac)
    for tpid, vid, pcp in tags:
        pkt = pkt / (Dot1AD(vlan=vid, prio=pcp) if tpid == 0x88A8 else Dot1Q(vlan=vid, prio=pcp))
    return pkt


def ip_layer(src: Host, dst: Host, ident: int = 0, dest_opts: bool = False, ip_options=False):
    if src.v6:
        pkt = IPv6(src=src.ip, dst=dst.ip, hlim=64)
        if dest_opts:
            pkt = pkt / IPv6ExtHdrDestOpt()
        return pkt
    options = [IPOption_RR(routers=["198.18.255.1"]), IPOption_NOP()] if ip_options else []
    return IP(src=src.ip, dst=dst.ip, id=ident & 0xFFFF, flags="DF", ttl=64, options=options)


def pad60(data: bytes) -> bytes:
    return data + b"\0" * (60 - len(data)) if len(data) < 60 else data


def corrupt_tcp_checksum(pkt) -> bytes:
    good = pkt.__class__(bytes(pkt))[TCP].chksum
    pkt[TCP].chksum = good ^ 0x5A5A
    return bytes(pkt)


def corrupt_ip_checksum(pkt) -> bytes:
    good = pkt.__class__(bytes(pkt))[IP].chksum
    pkt[IP].chksum = good ^ 0x0F0F
    return bytes(pkt)


@dataclass
class Item:
    """One input frame and what Sluice must do with it."""
    side: str                 # arrival side
    data: bytes
    fate: str = "fwd"         # fwd | drop
    emits: list = field(default_factory=list)  # [(to_client|to_server, bytes)] emitted at it
    ts: int = 0
    forwarded: bytes | None = None  # what leaves when Sluice rewrites it (default: data as is)


class Tcp:
    """A TCP connection between a client and a server; builds its frames."""

    def __init__(self, client: Host, server: Host, cport: int, sport: int = 8000,
                 cisn: int = 1000, sisn: int = 5000, tags=(), dest_opts=False, pad=False,
                 window=502, ip_options=False):
        self.client, self.server = client, server
        self.cport, self.sport = cport, sport
        self.cisn, self.sisn = cisn % MOD32, sisn % MOD32
        self.c_nxt, self.s_nxt = self.cisn, self.sisn  # the next sequence number each sends
        self.tags, self.dest_opts, self.pad, self.window = tags, dest_opts, pad, window
        self.ip_options = ip_options  # IPv4 record-route + NOP: a 32-byte header
        self.ip_id = {True: cport * 7 & 0xFFFF, False: sport * 13 + cport & 0xFFFF}

    def scapy(self, from_client: bool, flags: str, seq: int, ack: int, payload: bytes = b"",
              options=None):
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sp, dp = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        self.ip_id[from_client] += 1
        pkt = (l2(src, dst.mac, self.tags) / ip_layer(src, dst, self.ip_id[from_client], self.dest_opts,
                                                             self.ip_options)
               / TCP(sport=sp, dport=dp, seq=seq % MOD32, ack=ack % MOD32 if "A" in flags else 0,
                     flags=flags, window=self.window, options=options or []))
        if payload:
            pkt = pkt / Raw(payload)
        return pkt

    def raw(self, pkt) -> bytes:
        data = bytes(pkt)
        return pad60(data) if self.pad else data

    def send(self, from_client: bool, payload: bytes = b"", flags: str | None = None,
             seq: int | None = None, ack: int | None = None, fin: bool = False, options=None,
             fate: str = "fwd", bad: str | None = None, emits=None) -> Item:
        """A segment. seq defaults to the sender's next sequence number (and then advances it);
        ack defaults to everything the peer sent."""
        if flags is None:
            flags = ("F" if fin else "") + ("PA" if payload else "A")
        advance = seq is None
        if seq is None:
            seq = self.c_nxt if from_client else self.s_nxt
        if ack is None:
            ack = self.s_nxt if from_client else self.c_nxt
        pkt = self.scapy(from_client, flags, seq, ack, payload, options)
        if bad == "tcp":
            data = corrupt_tcp_checksum(pkt)
        elif bad == "ip":
            data = corrupt_ip_checksum(pkt)
        else:
            data = bytes(pkt)
        if self.pad:
            data = pad60(data)
        if advance:
            step = len(payload) + ("S" in flags) + ("F" in flags)
            if from_client:
                self.c_nxt = (self.c_nxt + step) % MOD32
            else:
                self.s_nxt = (self.s_nxt + step) % MOD32
        return Item(CLIENT if from_client else SERVER, data, fate, list(emits or []))

    def syn(self, **kw) -> Item:
        return self.send(True, flags="S", ack=0, options=SYN_OPTIONS, **kw)

    def synack(self, **kw) -> Item:
        return self.send(False, flags="SA", options=SYN_OPTIONS, **kw)

    def handshake(self) -> list[Item]:
        return [self.syn(), self.synack(), self.send(True)]

    def sluice_segment(self, to_server: bool, seq: int, ack: int, flags: str) -> bytes:
        """A segment Sluice builds itself on this flow (packet_builder.cpp's layout)."""
        src, dst = (self.client, self.server) if to_server else (self.server, self.client)
        sp, dp = (self.cport, self.sport) if to_server else (self.sport, self.cport)
        if src.v6:
            l3 = IPv6(src=src.ip, dst=dst.ip, tc=0, fl=0, hlim=64)
        else:
            l3 = IP(src=src.ip, dst=dst.ip, ihl=5, tos=0, id=0, flags="DF", frag=0, ttl=64)
        window = 0 if flags == "RA" else 65535
        return bytes(l2(src, dst.mac, self.tags) / l3
                     / TCP(sport=sp, dport=dp, seq=seq % MOD32, ack=ack % MOD32, dataofs=5,
                           flags=flags, window=window, urgptr=0))

    def rsts(self, client_next: int, server_next: int) -> list[tuple[str, bytes]]:
        """The two RSTs Sluice emits when it kills this flow: (to_server, to_client)."""
        return [(TO_SERVER, self.sluice_segment(True, client_next, server_next, "RA")),
                (TO_CLIENT, self.sluice_segment(False, server_next, client_next, "RA"))]

    def answered_fin(self, **kw) -> Item:
        """The client's FIN on a flow Sluice ended: not forwarded, acknowledged by Sluice
        (<SEQ=SEG.ACK><ACK=SEG.SEQ+SEG.LEN+1><CTL=ACK>) so the client's socket closes."""
        seq, ack = self.c_nxt, self.s_nxt
        item = self.send(True, fin=True, **kw)
        item.fate = "answered"
        item.emits.append((TO_CLIENT, self.sluice_segment(False, ack, seq + 1, "A")))
        return item

    def absorbed_ack(self) -> Item:
        """The client's ACK on a flow Sluice ended: taken in silence, not a drop."""
        item = self.send(True)
        item.fate = "answered"
        return item


def split(data: bytes, sizes) -> list[bytes]:
    """Splits data into pieces: sizes is an int (every piece that size) or a list of sizes."""
    if isinstance(sizes, int):
        return [data[i:i + sizes] for i in range(0, len(data), sizes)]
    out, pos = [], 0
    for s in sizes:
        out.append(data[pos:pos + s])
        pos += s
    if pos < len(data):
        out.append(data[pos:])
    return out


WORDS = ("the model should answer briefly about tokens latency throughput batching cache "
         "prompt inference request budget limit queue tier rate scheduler kernel packet wire "
         "filter admission audit rule stream decode gpu memory context window").split()


def text(rng: random.Random, length: int) -> str:
    out = []
    n = 0
    while n < length:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:length]


def fit(build, content: str, exact: int | None) -> bytes:
    """build(content) with content grown or shrunk so that the result is exactly `exact` bytes
    long (the framing, e.g. Content-Length, stays consistent)."""
    data = build(content)
    if exact is None:
        return data
    content += "x" * max(0, exact - len(data))
    for _ in range(10):
        data = build(content)
        if len(data) == exact:
            return data
        content = content[:len(content) - (len(data) - exact)] if len(data) > exact else \
            content + "x" * (exact - len(data))
    raise ValueError(f"cannot build a message of exactly {exact} bytes")


def http_request(rng: random.Random, prompt_len: int, exact: int | None = None,
                 host: str = "inference.sluice.test") -> bytes:
    """A chat completion request with a JSON body and a consistent Content-Length; with exact,
    the whole request is exactly that long."""
    key = "sk-test-%016x" % rng.getrandbits(64)

    def build(content: str) -> bytes:
        body = json.dumps({
            "model": "llama-3-8b-instruct",
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": content}],
            "max_tokens": 256, "temperature": 0.2, "stream": False,
        }, separators=(",", ":")).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
                f"User-Agent: sluice-golden/1.0\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return head + body
    return fit(build, text(rng, prompt_len), exact)


def http_response(rng: random.Random, answer_len: int, exact: int | None = None) -> bytes:
    """A 200 response with a JSON body; with exact, the whole response is exactly that long."""
    ident = "chatcmpl-%012x" % rng.getrandbits(48)

    def build(content: str) -> bytes:
        body = json.dumps({
            "id": ident, "object": "chat.completion", "model": "llama-3-8b-instruct",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
        }, separators=(",", ":")).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return head + body
    return fit(build, text(rng, answer_len), exact)


def session_items(t: Tcp, rng: random.Random, requests: int = 1, prompt_len: int = 1500,
                  answer_len: int = 2500, req_mss: int = 700, resp_mss: int = 1200,
                  close: str | None = "client", handshake: bool = True) -> list[Item]:
    """A complete keep-alive HTTP/1.1 session: handshake, requests with segmented bodies,
    responses in several segments with delayed ACKs, FIN/ACK close."""
    items = t.handshake() if handshake else []
    for _ in range(requests):
        for piece in split(http_request(rng, prompt_len), req_mss):
            items.append(t.send(True, piece))
        items.append(t.send(False))  # server ACKs the request
        pieces = split(http_response(rng, answer_len), resp_mss)
        for i, piece in enumerate(pieces):
            items.append(t.send(False, piece))
            if i % 2 == 1 or i == len(pieces) - 1:
                items.append(t.send(True))  # delayed ACK
    if close is None:
        return items
    first = close == "client"
    items.append(t.send(first, fin=True))
    items.append(t.send(not first, fin=True))
    items.append(t.send(first))
    return items


def arp_pair(client: Host, server: Host, tags=(), pad=False) -> list[Item]:
    req = (l2(client, "ff:ff:ff:ff:ff:ff", tags)
           / ARP(op=1, hwsrc=client.mac, psrc=client.ip, hwdst="00:00:00:00:00:00", pdst=server.ip))
    rep = (l2(server, client.mac, tags)
           / ARP(op=2, hwsrc=server.mac, psrc=server.ip, hwdst=client.mac, pdst=client.ip))
    f = pad60 if pad else (lambda b: b)
    return [Item(CLIENT, f(bytes(req))), Item(SERVER, f(bytes(rep)))]


def nd_pair(client: Host, server: Host, tags=()) -> list[Item]:
    """IPv6 neighbour solicitation (to the solicited-node group) and advertisement."""
    low24 = ipaddress.IPv6Address(server.ip).packed[13:]
    group = str(ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low24))
    group_mac = "33:33:ff:" + ":".join("%02x" % b for b in low24)
    ns = (l2(client, group_mac, tags) / IPv6(src=client.ip, dst=group, hlim=255)
          / ICMPv6ND_NS(tgt=server.ip) / ICMPv6NDOptSrcLLAddr(lladdr=client.mac))
    na = (l2(server, client.mac, tags) / IPv6(src=server.ip, dst=client.ip, hlim=255)
          / ICMPv6ND_NA(tgt=server.ip, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=server.mac))
    return [Item(CLIENT, bytes(ns)), Item(SERVER, bytes(na))]


def ping_pair(client: Host, server: Host, ident: int, seqno: int, tags=(), size=56) -> list[Item]:
    payload = bytes((i + seqno) & 0xFF for i in range(size))
    if client.v6:
        req = l2(client, server.mac, tags) / IPv6(src=client.ip, dst=server.ip, hlim=64) / \
            ICMPv6EchoRequest(id=ident, seq=seqno, data=payload)
        rep = l2(server, client.mac, tags) / IPv6(src=server.ip, dst=client.ip, hlim=64) / \
            ICMPv6EchoReply(id=ident, seq=seqno, data=payload)
    else:
        req = l2(client, server.mac, tags) / IP(src=client.ip, dst=server.ip, id=ident + seqno, ttl=64) / \
            ICMP(type=8, id=ident, seq=seqno) / Raw(payload)
        rep = l2(server, client.mac, tags) / IP(src=server.ip, dst=client.ip, id=ident + seqno + 1, ttl=64) / \
            ICMP(type=0, id=ident, seq=seqno) / Raw(payload)
    return [Item(CLIENT, bytes(req)), Item(SERVER, bytes(rep))]


def udp_pair(client: Host, server: Host, cport: int, sport: int, query: bytes, answer: bytes,
             tags=()) -> list[Item]:
    ipc = IPv6(src=client.ip, dst=server.ip) if client.v6 else IP(src=client.ip, dst=server.ip, id=cport)
    ips = IPv6(src=server.ip, dst=client.ip) if client.v6 else IP(src=server.ip, dst=client.ip, id=sport)
    req = l2(client, server.mac, tags) / ipc / UDP(sport=cport, dport=sport) / Raw(query)
    rep = l2(server, client.mac, tags) / ips / UDP(sport=sport, dport=cport) / Raw(answer)
    return [Item(CLIENT, bytes(req)), Item(SERVER, bytes(rep))]


def lldp_frame(src: Host) -> Item:
    # A minimal LLDPDU: chassis id, port id, TTL, end.
    tlvs = bytes.fromhex("020704") + bytes.fromhex(src.mac.replace(":", "")) + \
        bytes.fromhex("0403056574683002020078") + b"\0\0"
    return Item(CLIENT, bytes(Ether(src=src.mac, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(tlvs)))


def dns_query(rng: random.Random, name: str) -> tuple[bytes, bytes]:
    ident = rng.getrandbits(16)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    a = struct.pack(">HHHHHH", ident, 0x8180, 1, 1, 0, 0) + qname + struct.pack(">HH", 1, 1) + \
        struct.pack(">HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([198, 19, 0, rng.randrange(1, 250)])
    return q, a


class Clock:
    def __init__(self, start_us: int = BASE_TS_US):
        self.now = start_us

    def at(self, item: Item, gap_us: int = 100) -> Item:
        self.now += gap_us
        item.ts = self.now
        return item


def timeline(items: list[Item], start_us: int = BASE_TS_US, gap_us: int = 100) -> list[Item]:
    clock = Clock(start_us)
    return [clock.at(i, gap_us) for i in items]


def interleave(streams: list[tuple[int, list[Item]]], rng: random.Random,
               gap=(50, 2000)) -> list[Item]:
    """streams: (start time, items). Each stream keeps its order; streams interleave by time."""
    timed = []
    for index, (start, items) in enumerate(streams):
        now = start
        for position, item in enumerate(items):
            now += rng.randint(*gap)
            item.ts = now
            timed.append((now, index, position, item))
    timed.sort(key=lambda x: x[:3])
    return [x[3] for x in timed]


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    description: str
    items: list[Item]
    config: dict = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    counters: dict = field(default_factory=dict)     # exact values ("a+b" sums allowed)
    check_drop_totals: bool = True                    # unlisted drop_* must be 0, drops add up
    # tcp_payload_bytes_delivered = the distinct payload of forwarded inspected TCP segments
    # (true when every forwarded segment of a tracked flow is eventually delivered in order)
    auto_delivered: bool = True


def mac(kind: int, n: int) -> str:
    return "02:00:%02x:00:%02x:%02x" % (kind, (n >> 8) & 0xFF, n & 0xFF)


def v4client(n: int) -> Host:
    return Host(mac(1, n), f"198.18.{n // 250}.{n % 250 + 1}")


def v4server(n: int) -> Host:
    return Host(mac(2, n), f"198.19.0.{n}")


def v6client(n: int) -> Host:
    return Host(mac(3, n), f"2001:2:0:1::{n:x}")


def v6server(n: int) -> Host:
    return Host(mac(4, n), f"2001:2:0:2::{n:x}")


QINQ = ((0x88A8, 200, 0), (0x8100, 300, 3))
DOT1Q_100 = ((0x8100, 100, 0),)


def other_traffic(rng: random.Random, client: Host, server: Host, tags=()) -> list[list[Item]]:
    """Non-inspected exchanges between a client and a server: ARP, ping, DNS-like UDP."""
    q, a = dns_query(rng, "models.sluice.test")
    streams = [nd_pair(client, server, tags) if client.v6 else arp_pair(client, server, tags)]
    streams.append(ping_pair(client, server, 0x4242, 1, tags) + ping_pair(client, server, 0x4242, 2, tags))
    if not client.v6:
        streams.append(udp_pair(client, server, 53000 + rng.randrange(1000), 53, q, a, tags))
    return streams


def case_basic() -> Case:
    rng = random.Random(101)
    server = v4server(1)
    streams = []
    for i in range(3):
        t = Tcp(v4client(10 + i), server, 40000 + i, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
        streams.append((BASE_TS_US + i * 700, session_items(t, rng, requests=1 + i % 2)))
    for s in other_traffic(rng, v4client(10), server):
        streams.append((BASE_TS_US + rng.randrange(20000), s))
    streams.append((BASE_TS_US + 5000, [lldp_frame(v4client(11))]))
    return Case("basic", "3 interleaved HTTP sessions on port 8000, ARP, ICMP, UDP, LLDP: all "
                "forwarded unchanged to the opposite side", interleave(streams, rng))


def case_vlan() -> Case:
    rng = random.Random(102)
    server = v4server(1)
    streams = []
    tagsets = [DOT1Q_100, QINQ, ((0x8100, 101, 5),)]
    for i, tags in enumerate(tagsets):
        # Sessions 0 and 2 use the same 5-tuple on different VLANs: they are different flows.
        client = v4client(20)
        t = Tcp(client, server, 40000 if i != 1 else 40001, cisn=rng.getrandbits(32),
                sisn=rng.getrandbits(32), tags=tags, pad=True, ip_options=i == 1)
        streams.append((BASE_TS_US + i * 500, session_items(t, rng)))
    for tags in tagsets[:2]:
        for s in other_traffic(rng, v4client(20), server, tags):
            streams.append((BASE_TS_US + rng.randrange(20000), s))
    return Case("vlan", "802.1Q and QinQ (0x88a8 + 0x8100, with IPv4 options) tagged sessions, the "
                "same 5-tuple on two VLANs, tagged ARP/ICMP/UDP, frames padded to 60 bytes: all forwarded",
                interleave(streams, rng), counters={"flows_created": 3})


def case_ipv6() -> Case:
    rng = random.Random(103)
    server = v6server(1)
    streams = []
    t1 = Tcp(v6client(1), server, 41000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    t2 = Tcp(v6client(2), server, 41001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32),
             dest_opts=True)
    streams.append((BASE_TS_US, session_items(t1, rng, requests=2)))
    streams.append((BASE_TS_US + 300, session_items(t2, rng)))
    streams.append((BASE_TS_US + 4000, ping_pair(v6client(1), server, 7, 1)))
    streams.append((BASE_TS_US + 100, nd_pair(v6client(1), server)))
    q, a = dns_query(rng, "v6.sluice.test")
    streams.append((BASE_TS_US + 9000, udp_pair(v6client(2), server, 53111, 53, q, a)))
    return Case("ipv6", "IPv6 sessions, one with a destination-options extension header, "
                "ICMPv6 echo and neighbour solicitation, UDP: all forwarded", interleave(streams, rng))


def bad_checksum_items() -> tuple[list[Item], list[int]]:
    """Returns items and the indices of the two inspected packets with bad checksums."""
    rng = random.Random(104)
    client, server = v4client(30), v4server(1)
    t = Tcp(client, server, 42000, cisn=111_111, sisn=222_222)
    items = t.handshake()
    req = split(http_request(rng, 1500), 600)
    items.append(t.send(True, req[0]))
    seq1 = t.c_nxt
    bad = [len(items)]
    items.append(t.send(True, req[1], seq=seq1, fate="drop", bad="tcp"))  # bad TCP checksum
    items.append(t.send(True, req[1]))                                   # its retransmission
    for piece in req[2:]:
        items.append(t.send(True, piece))
    items.append(t.send(False))
    resp = split(http_response(rng, 1500), 1000)
    s1 = t.s_nxt
    bad.append(len(items))
    items.append(t.send(False, resp[0], seq=s1, fate="drop", bad="ip"))  # bad IPv4 header checksum
    for piece in resp:
        items.append(t.send(False, piece))
    items.append(t.send(True))
    items += [t.send(True, fin=True), t.send(False, fin=True), t.send(True)]
    # Other traffic is not checksum-checked: a UDP datagram with a wrong UDP checksum, a UDP
    # datagram with a wrong IPv4 header checksum and an ICMP echo with a wrong ICMP checksum.
    q, a = dns_query(rng, "bad.sluice.test")
    u = l2(client, server.mac) / IP(src=client.ip, dst=server.ip, id=9) / UDP(sport=53999, dport=53, chksum=0x1234) / Raw(q)
    u2 = l2(client, server.mac) / IP(src=client.ip, dst=server.ip, id=10) / UDP(sport=53998, dport=53) / Raw(q)
    p = l2(client, server.mac) / IP(src=client.ip, dst=server.ip, id=11) / ICMP(type=8, id=1, seq=1, chksum=0xBEEF) / Raw(b"ping")
    items[4:4] = [Item(CLIENT, bytes(u)), Item(CLIENT, corrupt_ip_checksum(u2)), Item(CLIENT, bytes(p))]
    bad = [b + 3 for b in bad]
    return timeline(items), bad


def case_bad_checksum() -> Case:
    items, _ = bad_checksum_items()
    return Case("bad_checksum", "bad TCP checksum, then its good retransmission; bad IPv4 header "
                "checksum on a response segment, then it again; UDP/ICMP/IPv4 with bad checksums "
                "(other traffic) forwarded", items,
                counters={"drop_bad_l4_checksum": 1, "drop_bad_ipv4_checksum": 1,
                          "bad_checksum_passed": 0, "tcp_identical_retransmissions": 0})


def case_bad_checksum_pass() -> Case:
    items, bad = bad_checksum_items()
    for b in bad:
        items[b].fate = "fwd"
    return Case("bad_checksum_pass", "bad_checksum: pass: the same capture, everything forwarded",
                items, config={"inspect": {"bad_checksum": "pass"}},
                counters={"bad_checksum_passed": 2, "tcp_identical_retransmissions": None},
                auto_delivered=False)


def case_reorder() -> Case:
    rng = random.Random(105)
    server = v4server(1)
    items = []
    # Session 1: request in 6 segments, received 1 3 4 3 2 2 5 6; a response of 17 x 1024 bytes
    # whose segment 15 arrives first (exactly fills the 16384-byte window: held) and segment 16
    # next (one byte... 1024 bytes beyond the window: dropped), then 0..14, then 16 again.
    t = Tcp(v4client(40), server, 43000, cisn=3_000_000, sisn=4_000_000)
    items += t.handshake()
    req = http_request(rng, 2600, exact=3000)
    base = t.c_nxt
    segs = [(base + i * 500, req[i * 500:(i + 1) * 500]) for i in range(6)]
    for i in (0, 2, 3, 2, 1, 1, 4, 5):
        items.append(t.send(True, segs[i][1], seq=segs[i][0]))
    t.c_nxt = (base + 3000) % MOD32
    items.append(t.send(False))
    resp = http_response(rng, 16000, exact=17 * 1024)
    sbase = t.s_nxt
    rsegs = [(sbase + i * 1024, resp[i * 1024:(i + 1) * 1024]) for i in range(17)]
    items.append(t.send(False, rsegs[15][1], seq=rsegs[15][0]))
    items.append(t.send(False, rsegs[16][1], seq=rsegs[16][0], fate="drop"))
    for i in range(15):
        items.append(t.send(False, rsegs[i][1], seq=rsegs[i][0]))
        if i % 4 == 3:
            items.append(t.send(True, ack=rsegs[i][0] + 1024))
    items.append(t.send(True, ack=sbase + 16 * 1024))
    items.append(t.send(False, rsegs[16][1], seq=rsegs[16][0]))
    t.s_nxt = (sbase + 17 * 1024) % MOD32
    items.append(t.send(True))
    items += [t.send(True, fin=True), t.send(False, fin=True), t.send(True)]
    # Session 2: 11 segments of 100 bytes; 2..10 arrive first: 8 are held, the 9th (segment 10)
    # exceeds reassembly_segments and is dropped; then 0, 1 fill the hole and 10 comes again.
    t2 = Tcp(v4client(41), server, 43001, cisn=7_000_000, sisn=8_000_000)
    items += t2.handshake()
    req2 = http_request(rng, 600, exact=1100)
    b2 = t2.c_nxt
    segs2 = [(b2 + i * 100, req2[i * 100:(i + 1) * 100]) for i in range(11)]
    for i in range(2, 11):
        items.append(t2.send(True, segs2[i][1], seq=segs2[i][0], fate="drop" if i == 10 else "fwd"))
    for i in (0, 1, 10):
        items.append(t2.send(True, segs2[i][1], seq=segs2[i][0]))
    t2.c_nxt = (b2 + 1100) % MOD32
    items.append(t2.send(False))
    resp2 = http_response(rng, 300)
    items.append(t2.send(False, resp2))
    items.append(t2.send(True))
    items += [t2.send(True, fin=True), t2.send(False, fin=True), t2.send(True)]
    delivered = 3000 + 17 * 1024 + 1100 + len(resp2)
    return Case("reorder", "out-of-order segments held and forwarded, hole filled; identical "
                "retransmissions of held and delivered bytes; a segment ending beyond the "
                "16384-byte window and a 9th held segment dropped", timeline(items),
                config={"inspect": {"reassembly_bytes": 16384, "reassembly_segments": 8}},
                counters={"tcp_out_of_order_held": 11, "drop_tcp_out_of_order_overflow": 2,
                          "tcp_identical_retransmissions": 2,
                          "tcp_payload_bytes_delivered": delivered})


def different(data: bytes) -> bytes:
    """Same length, different bytes."""
    return bytes(b ^ 0x20 if 0x41 <= (b | 0x20) <= 0x7A and chr(b).isalpha() else b for b in data)


def case_conflict() -> Case:
    rng = random.Random(106)
    s1, s2 = v4server(1), v4server(2)
    streams = []
    # A: the client retransmits its second (unacknowledged) request segment with other bytes.
    a = Tcp(v4client(50), s1, 44000, cisn=10_000, sisn=20_000)
    it = a.handshake()
    req = split(http_request(rng, 1200), 600)
    it.append(a.send(True, req[0]))
    p2 = a.c_nxt
    it.append(a.send(True, req[1]))
    it.append(a.send(False, ack=p2))                    # server acknowledges the first only
    rst = a.rsts(client_next=a.c_nxt, server_next=a.s_nxt)
    it.append(a.send(True, different(req[1]), seq=p2, fate="drop", emits=rst))
    killed = 0
    for item in (a.send(False), a.send(True, req[2] if len(req) > 2 else b"tail")):
        item.fate = "drop"
        killed += 1
        it.append(item)
    it.append(a.answered_fin())                         # acknowledged by Sluice, not a drop
    item = a.send(False, fin=True, fate="drop")
    killed += 1
    it.append(item)
    streams.append((BASE_TS_US, it))
    # A again, 2 s later: a new SYN on the same 5-tuple starts a new flow that passes.
    a2 = Tcp(a.client, a.server, a.cport, cisn=900_000, sisn=800_000)
    streams.append((BASE_TS_US + 2_000_000, session_items(a2, rng)))
    # B: an ordinary session interleaved with the others.
    b = Tcp(v4client(51), s1, 44001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    streams.append((BASE_TS_US + 300, session_items(b, rng, requests=2)))
    # C (VLAN 100): the server retransmits its second response segment with other bytes.
    c = Tcp(v4client(52), s2, 44002, cisn=30_000, sisn=40_000, tags=DOT1Q_100)
    it = c.handshake()
    it.append(c.send(True, http_request(rng, 150)))
    it.append(c.send(False))
    resp = split(http_response(rng, 1600), 800)
    it.append(c.send(False, resp[0]))
    r2 = c.s_nxt
    it.append(c.send(False, resp[1]))
    it.append(c.send(True, ack=r2))                     # the client acknowledges the first only
    rst = c.rsts(client_next=c.c_nxt, server_next=c.s_nxt)
    it.append(c.send(False, different(resp[1]), seq=r2, fate="drop", emits=rst))
    it.append(c.absorbed_ack())
    it.append(c.send(False, resp[2], fate="drop"))
    killed += 1
    streams.append((BASE_TS_US + 500, it))
    # D (IPv6): a retransmission that differs from bytes held out of order.
    d = Tcp(v6client(53), v6server(1), 44003, cisn=50_000, sisn=60_000)
    it = d.handshake()
    req = split(http_request(rng, 1500), 400)
    it.append(d.send(True, req[0]))
    next_d = d.c_nxt
    s3 = (d.c_nxt + 800) % MOD32
    it.append(d.send(True, req[2], seq=s3))             # held: forwarded
    rst = d.rsts(client_next=next_d, server_next=d.s_nxt)
    it.append(d.send(True, different(req[2]), seq=s3, fate="drop", emits=rst))
    item = d.send(True, req[1], seq=next_d, fate="drop")
    killed += 1
    it.append(item)
    streams.append((BASE_TS_US + 700, it))
    # E: the client's FIN was delivered; the server's retransmission differs. The RST to the
    # server carries the client's next sequence number after the FIN.
    e = Tcp(v4client(54), s1, 44004, cisn=70_000, sisn=80_000)
    it = e.handshake()
    it.append(e.send(True, http_request(rng, 100)))
    it.append(e.send(True, fin=True))
    it.append(e.send(False))
    resp = split(http_response(rng, 900), 500)
    it.append(e.send(False, resp[0]))
    r2 = e.s_nxt
    it.append(e.send(False, resp[1]))
    it.append(e.send(True, ack=r2))
    rst = e.rsts(client_next=e.c_nxt, server_next=e.s_nxt)
    it.append(e.send(False, different(resp[1]), seq=r2, fate="drop", emits=rst))
    it.append(e.absorbed_ack())
    streams.append((BASE_TS_US + 900, it))
    # F (QinQ, IPv4 options): the RSTs copy both tags and have a plain 20-byte IPv4 header.
    f = Tcp(v4client(55), s2, 44005, cisn=0xFFFFFF00, sisn=0x7FFFFFF0, tags=QINQ, ip_options=True)
    it = f.handshake()
    req = split(http_request(rng, 1000), 500)
    it.append(f.send(True, req[0]))
    p2 = f.c_nxt
    it.append(f.send(True, req[1]))
    rst = f.rsts(client_next=f.c_nxt, server_next=f.s_nxt)
    it.append(f.send(True, different(req[1]), seq=p2, fate="drop", emits=rst))
    streams.append((BASE_TS_US + 1100, it))
    return Case("conflict", "retransmissions with different bytes (client side, server side on "
                "VLAN 100, IPv6 against held bytes, after the client's FIN, QinQ with IPv4 options "
                "across the 2^32 wrap): packet dropped, RST "
                "to each side, later packets dropped; the 5-tuple reused by a new SYN passes; "
                "another flow unaffected", interleave(streams, rng, gap=(100, 900)),
                counters={"drop_tcp_conflicting_retransmission": 5, "tcp_flows_killed": 5,
                          "rst_sent": 10, "drop_tcp_killed_flow": killed,
                          "tcp_killed_flow_answered": 1, "tcp_killed_flow_absorbed": 2,
                          "tcp_out_of_order_held": 1},  # D's held segment, never delivered
                auto_delivered=False)


def midstream_items() -> tuple[list[Item], list[Item]]:
    rng = random.Random(107)
    streams = []
    n = Tcp(v4client(60), v4server(1), 45000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    streams.append((BASE_TS_US, session_items(n, rng)))
    # A connection already under way when the capture starts: no SYN, server 198.19.0.2 known
    # only through --server-net.
    m = Tcp(v4client(61), v4server(2), 45001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    m.c_nxt, m.s_nxt = (m.cisn + 5000) % MOD32, (m.sisn + 9000) % MOD32
    it = [m.send(True, http_request(rng, 300)), m.send(False)]
    it += [m.send(False, piece) for piece in split(http_response(rng, 1000), 700)]
    it += [m.send(True), m.send(True, fin=True), m.send(False, fin=True), m.send(True),
           m.send(True, flags="R", ack=0)]
    streams.append((BASE_TS_US + 400, it))
    return interleave(streams, rng), it


def case_midstream() -> Case:
    items, mid = midstream_items()
    for item in mid:
        item.fate = "drop"
    return Case("midstream", "a connection with no SYN in the capture: dropped; another session "
                "passes", items, args=["--server-net", "198.19.0.2/32"],
                counters={"drop_midstream": len(mid), "midstream_passed": 0})


def case_midstream_pass() -> Case:
    items, mid = midstream_items()
    return Case("midstream_pass", "midstream: pass: the connection with no SYN is forwarded",
                items, config={"inspect": {"midstream": "pass"}},
                args=["--server-net", "198.19.0.2/32"], counters={"midstream_passed": len(mid)},
                auto_delivered=False)


def case_policy_drop() -> Case:
    rng = random.Random(108)
    client, server = v4client(70), v4server(1)
    streams = []
    t = Tcp(client, server, 46000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    streams.append((BASE_TS_US, session_items(t, rng)))
    dropped_other = []
    ssh = Tcp(v4client(71), server, 46001, sport=22, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it = ssh.handshake() + [ssh.send(True, b"SSH-2.0-OpenSSH_9.2\r\n"),
                            ssh.send(False, b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"),
                            ssh.send(True, fin=True), ssh.send(False, fin=True), ssh.send(True)]
    streams.append((BASE_TS_US + 200, it))
    dropped_other += it
    for s in other_traffic(rng, client, server):
        streams.append((BASE_TS_US + rng.randrange(10000), s))
        dropped_other += s
    lldp = lldp_frame(client)
    streams.append((BASE_TS_US + 3000, [lldp]))
    dropped_other.append(lldp)
    frags = fragment_items(client, server)
    streams.append((BASE_TS_US + 6000, frags))
    for item in dropped_other + frags:
        item.fate = "drop"
    return Case("policy_drop", "other_traffic: drop: ARP, ICMP, UDP, TCP on port 22, LLDP and "
                "fragments dropped; the inspected session passes", interleave(streams, rng),
                config={"inspect": {"other_traffic": "drop"}},
                counters={"drop_other_traffic+drop_fragment": len(dropped_other) + len(frags),
                          "other_traffic_passed": 0})


def fragment_items(client: Host, server: Host) -> list[Item]:
    """A fragmented ICMP echo (IPv4, 3 fragments) and a fragmented UDP datagram (IPv6, 3)."""
    ping = IP(src=client.ip, dst=server.ip, id=4321, ttl=64) / ICMP(type=8, id=9, seq=1) / (b"f" * 3000)
    items = [Item(CLIENT, bytes(l2(client, server.mac) / f)) for f in fragment(ping, fragsize=1400)]
    c6, s6 = v6client(70), v6server(1)
    big = IPv6(src=c6.ip, dst=s6.ip, hlim=64) / IPv6ExtHdrFragment(id=0x1234) / \
        UDP(sport=5000, dport=5001) / (b"g" * 3000)
    items += [Item(CLIENT, bytes(l2(c6, s6.mac) / f)) for f in fragment6(big, 1500)]
    return items


def fragments_items() -> tuple[list[Item], list[Item]]:
    rng = random.Random(109)
    client, server = v4client(80), v4server(1)
    t = Tcp(client, server, 47000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    frags = fragment_items(client, server)
    streams = [(BASE_TS_US, session_items(t, rng)), (BASE_TS_US + 3000, frags)]
    streams += [(BASE_TS_US + 5000, s) for s in other_traffic(rng, client, server)]
    return interleave(streams, rng), frags


def case_fragments() -> Case:
    items, frags = fragments_items()
    for f in frags:
        f.fate = "drop"
    return Case("fragments", "IPv4 and IPv6 fragments dropped (fragments: drop, the default); "
                "other traffic and the session pass", items,
                counters={"drop_fragment": len(frags), "fragments_passed": 0})


def case_fragments_pass() -> Case:
    items, frags = fragments_items()
    return Case("fragments_pass", "fragments: pass: fragments forwarded", items,
                config={"inspect": {"fragments": "pass"}},
                counters={"fragments_passed": len(frags)})


def case_table_full() -> Case:
    rng = random.Random(110)
    server = v4server(1)
    a, b, c = (Tcp(v4client(90 + i), server, 48000 + i, cisn=rng.getrandbits(32),
                   sisn=rng.getrandbits(32)) for i in range(3))
    clock = Clock()
    items = [clock.at(a.syn()), clock.at(b.syn()), clock.at(c.syn())]  # C evicts A
    items.append(clock.at(a.synack(fate="drop")))                         # A is gone: midstream
    for t in (b, c):
        items.append(clock.at(t.synack()))
    for t in (b, c):
        items.append(clock.at(t.send(True)))
    # A's client retransmits its SYN after 1 s: B and C are established, nothing to evict.
    items.append(clock.at(a.send(True, flags="S", seq=a.cisn, ack=0, options=SYN_OPTIONS,
                                 fate="drop"), 1_000_000))
    for t in (b, c):
        for item in session_items(t, rng, handshake=False):
            items.append(clock.at(item))
    return Case("table_full", "flow_capacity 2, three SYNs before any SYN-ACK: the oldest "
                "half-open flow is evicted, its SYN-ACK is then midstream (dropped) and its "
                "retransmitted SYN finds the table full (dropped)", items,
                config={"dataplane": {"flow_capacity": 2}},
                counters={"flows_created": 3, "flows_evicted": 1, "drop_midstream": 1,
                          "drop_flow_table_full": 1})


def table_full_established(policy: str) -> tuple[list[Item], list[Item]]:
    rng = random.Random(111)
    server = v4server(1)
    a, b, c = (Tcp(v4client(95 + i), server, 48100 + i, cisn=rng.getrandbits(32),
                   sisn=rng.getrandbits(32)) for i in range(3))
    clock = Clock()
    sa, sb = session_items(a, rng), session_items(b, rng)
    items = [clock.at(x) for x in sa[:4] + sb[:4]]
    fate = "drop" if policy == "drop" else "fwd"
    csyns = [clock.at(c.syn(fate=fate))]
    if policy == "drop":
        csyns.append(clock.at(c.send(True, flags="S", seq=c.cisn, ack=0, options=SYN_OPTIONS,
                                     fate="drop"), 1_000_000))
    items += csyns
    items += [clock.at(x) for x in sa[4:] + sb[4:]]
    return items, csyns


def case_table_full_drop() -> Case:
    items, csyns = table_full_established("drop")
    return Case("table_full_drop", "flow_capacity 2, two established flows: the third flow's "
                "SYN (and its retransmission) hit on_flow_table_full: drop", items,
                config={"dataplane": {"flow_capacity": 2}},
                counters={"flows_created": 2, "flows_evicted": 0,
                          "drop_flow_table_full": len(csyns)})


def case_table_full_pass() -> Case:
    items, csyns = table_full_established("pass")
    return Case("table_full_pass", "on_flow_table_full: pass: the third flow's SYN is forwarded",
                items, config={"dataplane": {"flow_capacity": 2},
                               "inspect": {"on_flow_table_full": "pass"}},
                counters={"flows_created": 2, "flow_table_full_passed": len(csyns),
                          "drop_flow_table_full": 0})


def case_table_full_expiry() -> Case:
    rng = random.Random(112)
    server = v4server(1)
    a, b, c = (Tcp(v4client(85 + i), server, 48200 + i, cisn=rng.getrandbits(32),
                   sisn=rng.getrandbits(32)) for i in range(3))
    clock = Clock()
    items = [clock.at(x) for x in session_items(a, rng) + session_items(b, rng)]
    # 31 s later both closed flows are past the closing timeout (30 s): C gets a slot.
    sc = session_items(c, rng)
    items.append(clock.at(sc[0], 31_000_000))
    items += [clock.at(x) for x in sc[1:]]
    return Case("table_full_expiry", "flow_capacity 2, two closed flows idle for 31 s (closing "
                "timeout 30 s): a third session gets a slot and passes", items,
                config={"dataplane": {"flow_capacity": 2}},
                counters={"flows_created": 3, "drop_flow_table_full": 0})


def case_seq_wrap() -> Case:
    rng = random.Random(113)
    server = v4server(1)
    items = []
    # A: both directions' data cross 2^32 inside a segment; the request has an out-of-order
    # segment across the wrap and an identical retransmission across it.
    a = Tcp(v4client(100), server, 49000, cisn=MOD32 - 768, sisn=MOD32 - 2305)
    items += a.handshake()
    req = http_request(rng, 3700, exact=4000)
    base = a.c_nxt
    segs = [((base + i * 1000) % MOD32, req[i * 1000:(i + 1) * 1000]) for i in range(len(req) // 1000)]
    for i in (0, 2, 1, 3, 0):  # segment 0 spans the wrap
        items.append(a.send(True, segs[i][1], seq=segs[i][0]))
    a.c_nxt = (base + 1000 * len(segs)) % MOD32
    items.append(a.send(False))
    resp = http_response(rng, 6000)
    for piece in split(resp, 1200):
        items.append(a.send(False, piece))
    items.append(a.send(True))
    items += [a.send(True, fin=True), a.send(False, fin=True), a.send(True)]
    # B: the client's SYN is at 2^32 - 1 (its data starts at 0); the server's data crosses 2^31.
    b = Tcp(v4client(101), server, 49001, cisn=MOD32 - 1, sisn=(1 << 31) - 1000)
    items += session_items(b, rng, answer_len=3000)
    return Case("seq_wrap", "sequence numbers wrapping at 2^32 (in the SYN and inside "
                "segments), an out-of-order segment and a retransmission across the wrap, and "
                "data crossing 2^31", timeline(items),
                counters={"tcp_out_of_order_held": 1, "tcp_identical_retransmissions": 1})


def case_port_reuse() -> Case:
    rng = random.Random(114)
    client, server = v4client(110), v4server(1)
    t1 = Tcp(client, server, 50000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    items = timeline(session_items(t1, rng))
    t2 = Tcp(client, server, 50000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    items += timeline(session_items(t2, rng), start_us=items[-1].ts + 2_000_000)
    return Case("port_reuse", "a closed connection's 5-tuple reused by a new SYN 2 s later (within "
                "the closing timeout): both sessions pass", items)


def case_reorder_limits() -> Case:
    rng = random.Random(115)
    t = Tcp(v4client(42), v4server(1), 43100, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    items = t.handshake()
    req = http_request(rng, 2600, exact=3000)
    base = t.c_nxt
    segs = [((base + i * 500) % MOD32, req[i * 500:(i + 1) * 500]) for i in range(6)]
    # reassembly_bytes 2048, reassembly_segments 2: 1 and 2 are held; 3 fits the bytes but is a
    # third segment (dropped); 4 ends 2500 bytes ahead (dropped); 0 fills the hole.
    for i, fate in ((1, "fwd"), (2, "fwd"), (3, "drop"), (4, "drop"), (0, "fwd"), (3, "fwd"),
                    (4, "fwd"), (5, "fwd")):
        items.append(t.send(True, segs[i][1], seq=segs[i][0], fate=fate))
    t.c_nxt = (base + 3000) % MOD32
    items.append(t.send(False))
    resp = http_response(rng, 500)
    items += [t.send(False, resp), t.send(True)]
    items += [t.send(True, fin=True), t.send(False, fin=True), t.send(True)]
    return Case("reorder_limits", "reassembly_bytes 2048 / reassembly_segments 2 from the config: "
                "a third held segment and one ending beyond the window are dropped",
                timeline(items),
                config={"inspect": {"reassembly_bytes": 2048, "reassembly_segments": 2}},
                counters={"tcp_out_of_order_held": 2, "drop_tcp_out_of_order_overflow": 2,
                          "tcp_payload_bytes_delivered": 3000 + len(resp)})


def case_malformed() -> Case:
    rng = random.Random(116)
    c, srv = v4client(120), v4server(1)
    eth = bytes(Ether(src=c.mac, dst=srv.mac, type=0x0800))[:12]

    def ipv4(proto: int, l4: bytes, **kw) -> bytes:
        return bytes(IP(src=c.ip, dst=srv.ip, proto=proto, id=77, **kw) / Raw(l4))

    udp = bytes(UDP(sport=5555, dport=53) / Raw(b"q" * 20))
    good_ip = ipv4(17, udp)
    bad_ihl = bytearray(good_ip)
    bad_ihl[0] = 0x44
    frames = [
        ("drop_truncated_ethernet", bytes(Ether(src=c.mac, dst=srv.mac))[:10]),
        ("drop_too_many_vlan_tags", bytes(Ether(src=c.mac, dst=srv.mac) / Dot1AD(vlan=1) / Dot1Q(vlan=2)
                                          / Dot1Q(vlan=3) / IP(src=c.ip, dst=srv.ip) / UDP() / Raw(b"x" * 8))),
        ("drop_truncated_vlan", eth + b"\x81\x00\x00\x64"),
        ("drop_truncated_arp", bytes(Ether(src=c.mac, dst="ff:ff:ff:ff:ff:ff")
                                     / ARP(psrc=c.ip, pdst=srv.ip, hwsrc=c.mac))[:14 + 20]),
        ("drop_truncated_ipv4", eth + b"\x08\x00" + good_ip[:12]),
        ("drop_bad_ipv4_header", eth + b"\x08\x00" + bytes(bad_ihl)),
        ("drop_bad_ipv4_length", eth + b"\x08\x00" + ipv4(17, udp, len=len(good_ip) + 100)),
        ("drop_truncated_ipv6", eth + b"\x86\xdd" + bytes(IPv6(src=v6client(120).ip, dst=v6server(1).ip))[:30]),
        ("drop_bad_ipv6_extension", eth + b"\x86\xdd" + bytes(
            IPv6(src=v6client(120).ip, dst=v6server(1).ip, nh=60, plen=8) / Raw(b"\x11\x02" + b"\0" * 6))),
        ("drop_truncated_tcp", eth + b"\x08\x00" + ipv4(6, struct.pack(">HHII", 40123, 8000, 1, 0))),
        ("drop_bad_tcp_header", eth + b"\x08\x00" + ipv4(6, bytes(TCP(sport=40124, dport=8000, flags="S",
                                                                     dataofs=15)))),
        ("drop_truncated_udp", eth + b"\x08\x00" + ipv4(17, b"\x15\xb3\x00\x35")),
        ("drop_truncated_icmp", eth + b"\x08\x00" + ipv4(1, b"\x08\x00\x00\x00")),
    ]
    t = Tcp(c, srv, 40125, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    session = session_items(t, rng)
    items = session[:3]
    counters = {}
    for reason, data in frames:
        items.append(Item(CLIENT, data, "drop"))
        counters[reason] = counters.get(reason, 0) + 1
    items += session[3:]
    return Case("malformed", "one malformed frame per drop reason of the classifier (truncated "
                "Ethernet, VLAN, ARP, IPv4, IPv6, TCP, UDP, ICMP; three tags; bad IPv4 header and "
                "length; bad IPv6 extension; bad TCP data offset): dropped and counted; a session "
                "around them passes", timeline(items), counters=counters)


def case_timeouts() -> Case:
    rng = random.Random(117)
    server = v4server(1)
    a = Tcp(v4client(130), server, 51000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    b = Tcp(v4client(131), server, 51001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    c = Tcp(v4client(132), server, 51002, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    sec = 1_000_000
    timed = []  # (ts, item)

    def put(ts: int, item: Item) -> None:
        item.ts = ts
        timed.append(item)

    # A (half_open 5 s): its SYN-ACK arrives 6 s after the SYN, when the flow has expired:
    # midstream, dropped. The client's retransmitted SYN then opens a new flow.
    put(BASE_TS_US, a.syn())
    put(BASE_TS_US + 6 * sec, a.send(False, flags="SA", seq=a.sisn, options=SYN_OPTIONS, fate="drop"))
    put(BASE_TS_US + 6 * sec + 100_000, a.send(True, flags="S", seq=a.cisn, ack=0, options=SYN_OPTIONS))
    a.c_nxt, a.s_nxt = a.cisn, a.sisn
    rest = session_items(a, rng)[1:]
    for k, item in enumerate(rest):
        put(BASE_TS_US + 6 * sec + 200_000 + k * 1000, item)
    # C (closing 5 s): a server FIN retransmitted 6 s after the close: dropped.
    sc = session_items(c, rng)
    for k, item in enumerate(sc):
        put(BASE_TS_US + 500_000 + k * 1000, item)
    fin = sc[-2] if sc[-2].side == SERVER else sc[-3]
    put(sc[-1].ts + 6 * sec, Item(SERVER, fin.data, "drop"))
    # B (established 20 s): a request after 19 s idle passes; one after 21 s idle is dropped.
    sb = session_items(b, rng, close=None)
    for k, item in enumerate(sb):
        put(BASE_TS_US + 1000 + k * 1000, item)
    now = sb[-1].ts + 19 * sec
    second = [b.send(True, http_request(rng, 200)), b.send(False)]
    second += [b.send(False, http_response(rng, 300)), b.send(True)]
    for k, item in enumerate(second):
        put(now + k * 1000, item)
    now = second[-1].ts + 21 * sec
    third = b.send(True, http_request(rng, 200), fate="drop")
    put(now, third)
    put(now + sec, Item(CLIENT, third.data, "drop"))  # its retransmission
    timed.sort(key=lambda i: i.ts)
    return Case("timeouts", "timeouts from the config (half_open 5, established 20, closing 5): "
                "a SYN-ACK 6 s after its SYN, a request after 21 s idle and a FIN 6 s after the "
                "close find their flows expired (midstream, dropped); a request after 19 s idle "
                "passes", timed,
                config={"inspect": {"timeouts": {"half_open": 5, "established": 20, "closing": 5}}},
                counters={"drop_midstream": 4})


def case_ports() -> Case:
    rng = random.Random(118)
    server = v4server(1)
    streams = []
    for i, port in enumerate((8080, 9000)):
        t = Tcp(v4client(140 + i), server, 52000 + i, sport=port, cisn=rng.getrandbits(32),
                sisn=rng.getrandbits(32))
        streams.append((BASE_TS_US + i * 300, session_items(t, rng)))
    mids = []
    for i, port in enumerate((9000, 8000)):
        m = Tcp(v4client(142 + i), server, 52002 + i, sport=port, cisn=rng.getrandbits(32),
                sisn=rng.getrandbits(32))
        it = [m.send(True, http_request(rng, 200)), m.send(False), m.send(False, http_response(rng, 200)),
              m.send(True)]
        mids.append(it)
        streams.append((BASE_TS_US + 1000 + i * 300, it))
    for item in mids[0]:
        item.fate = "drop"
    t = Tcp(v4client(144), server, 52004, sport=8000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    plain = session_items(t, rng)
    streams.append((BASE_TS_US + 2000, plain))
    return Case("ports", "tcp_ports [8080, 9000] from the config: sessions on 8080 and 9000 are "
                "inspected (flows created; a midstream one on 9000 dropped); TCP on 8000 is other "
                "traffic now (a midstream one and a session forwarded)", interleave(streams, rng),
                config={"inspect": {"tcp_ports": [8080, 9000]}},
                counters={"flows_created": 2, "drop_midstream": len(mids[0]),
                          "other_traffic_passed": len(mids[1]) + len(plain)})


def case_tcp_edges() -> Case:
    rng = random.Random(119)
    server = v4server(1)
    # A: a retransmitted SYN, a server packet before the SYN-ACK (dropped), a retransmitted
    # SYN-ACK, and a close by the server's RST (forwarded).
    a = Tcp(v4client(150), server, 53000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it = [a.syn(), a.send(True, flags="S", seq=a.cisn, ack=0, options=SYN_OPTIONS),
          a.send(False, flags="A", seq=a.sisn + 1, fate="drop"), a.synack(),
          a.send(False, flags="SA", seq=a.sisn, options=SYN_OPTIONS), a.send(True)]
    it += [a.send(True, http_request(rng, 300)), a.send(False)]
    it += [a.send(False, p) for p in split(http_response(rng, 2000), 1200)]
    it += [a.send(True), a.send(False, flags="RA")]
    # B: the client sends data after its FIN (dropped); the server answers and closes.
    b = Tcp(v4client(151), server, 53001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it2 = b.handshake() + [b.send(True, http_request(rng, 300)), b.send(True, fin=True), b.send(False)]
    it2.append(b.send(True, b"late data after the FIN", fate="drop"))
    it2 += [b.send(False, http_response(rng, 400)), b.send(True), b.send(False, fin=True), b.send(True)]
    return Case("tcp_edges", "retransmitted SYN and SYN-ACK forwarded, a server packet before "
                "the SYN-ACK dropped, data after the client's FIN dropped, RST forwarded",
                interleave([(BASE_TS_US, it), (BASE_TS_US + 500, it2)], rng),
                counters={"drop_tcp_unexpected+drop_tcp_out_of_window": 2,
                          # whether SYN / SYN-ACK retransmissions count is not specified
                          "tcp_identical_retransmissions": None})


def finish(t: Tcp, rng: random.Random) -> list[Item]:
    """The rest of a session after the request: ACK, a response, the close."""
    items = [t.send(False)]
    items += [t.send(False, p) for p in split(http_response(rng, 1500), 1200)]
    items += [t.send(True), t.send(True, fin=True), t.send(False, fin=True), t.send(True)]
    return items


def case_retransmit() -> Case:
    rng = random.Random(120)
    server = v4server(1)
    # A: two unacknowledged segments retransmitted as one.
    a = Tcp(v4client(160), server, 54000, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it = a.handshake()
    segs = split(http_request(rng, 2800, exact=3000), 1000)
    s0 = a.c_nxt
    it += [a.send(True, p) for p in segs]
    it.append(a.send(False, ack=s0 + 1000))
    it.append(a.send(True, segs[1] + segs[2], seq=s0 + 1000))
    it += finish(a, rng)
    # B: a segment that repeats delivered bytes and carries new ones.
    b = Tcp(v4client(161), server, 54001, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it2 = b.handshake()
    body = http_request(rng, 2800, exact=3000)
    s0 = b.c_nxt
    it2 += [b.send(True, body[:1000]), b.send(True, body[1000:2000])]
    it2.append(b.send(True, body[1000:3000], seq=s0 + 1000))
    b.c_nxt = (s0 + 3000) % MOD32
    it2 += finish(b, rng)
    return Case("retransmit", "retransmissions shaped differently from the originals: two "
                "unacknowledged segments resent as one (identical), a segment repeating "
                "delivered bytes and adding new ones: forwarded",
                interleave([(BASE_TS_US, it), (BASE_TS_US + 500, it2)], rng),
                counters={"tcp_identical_retransmissions": 1})


def case_retransmit_resegmented() -> Case:
    rng = random.Random(121)
    t = Tcp(v4client(162), v4server(1), 54002, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it = t.handshake()
    segs = split(http_request(rng, 2800, exact=3000), 1000)
    s0 = t.c_nxt
    it += [t.send(True, p) for p in segs]
    it.append(t.send(False, ack=s0 + 1000))
    # The sender's MSS dropped (e.g. after an ICMP "fragmentation needed"): the unacknowledged
    # second segment comes again, same bytes, in two halves.
    it.append(t.send(True, segs[1][:500], seq=s0 + 1000))
    it.append(t.send(True, segs[1][500:], seq=s0 + 1500))
    it += finish(t, rng)
    return Case("retransmit_resegmented", "an unacknowledged segment retransmitted with the same "
                "bytes in two smaller segments: identical retransmissions, forwarded",
                timeline(it), counters={"tcp_identical_retransmissions": 2})


def case_retransmit_old() -> Case:
    rng = random.Random(122)
    t = Tcp(v4client(163), v4server(1), 54003, cisn=rng.getrandbits(32), sisn=rng.getrandbits(32))
    it = t.handshake()
    segs = split(http_request(rng, 27000, exact=28960), 1448)  # 20 full segments in flight
    s0 = t.c_nxt
    it += [t.send(True, p) for p in segs]
    # The first segment was lost after Sluice: the server keeps acknowledging its start, and the
    # client retransmits it (fast retransmit / RTO) with the same bytes.
    it += [t.send(False, ack=s0) for _ in range(3)]
    it.append(t.send(True, segs[0], seq=s0))
    it += finish(t, rng)
    return Case("retransmit_old", "20 segments in flight, the first one retransmitted with the "
                "same bytes while unacknowledged: identical retransmission, forwarded",
                timeline(it), counters={"tcp_identical_retransmissions": 1})


def case_mix10k() -> Case:
    rng = random.Random(20240501)
    servers4 = [v4server(n) for n in range(1, 9)]
    servers6 = [v6server(n) for n in range(1, 3)]
    streams = []
    duration = 20_000_000
    sessions = reordered = duplicated = 0
    n_client = 0
    while sum(len(s[1]) for s in streams) < 10_400:
        n_client += 1
        v6 = rng.random() < 0.15
        client = v6client(n_client) if v6 else v4client(n_client)
        server = rng.choice(servers6 if v6 else servers4)
        r = rng.random()
        tags = () if r < 0.75 else (((0x8100, rng.choice((10, 20)), 0),) if r < 0.93 else QINQ)
        pad = rng.random() < 0.25
        start = BASE_TS_US + rng.randrange(duration)
        if rng.random() < 0.06:  # TCP on a port that is not inspected
            t = Tcp(client, server, 30000 + n_client, sport=443, cisn=rng.getrandbits(32),
                    sisn=rng.getrandbits(32), tags=tags, pad=pad)
        else:
            t = Tcp(client, server, 30000 + n_client, cisn=rng.getrandbits(32),
                    sisn=rng.getrandbits(32), tags=tags, pad=pad)
            sessions += 1
        items = session_items(t, rng, requests=rng.randint(1, 3),
                              prompt_len=rng.randint(50, 4000), answer_len=rng.randint(100, 6000),
                              req_mss=rng.choice((536, 1200, 1448)),
                              resp_mss=rng.choice((1200, 1448)),
                              close=rng.choice(("client", "server")))
        # A few sessions see a reordered pair of data segments or a duplicated one.
        data_idx = [i for i, it in enumerate(items) if len(it.data) > 120 and i > 2]
        k = rng.random()
        if k < 0.05 and len(data_idx) >= 2:
            i = data_idx[rng.randrange(len(data_idx) - 1)]
            if i + 1 in data_idx and items[i].side == items[i + 1].side:
                items[i], items[i + 1] = items[i + 1], items[i]
                reordered += t.sport == 8000
        elif k < 0.10 and data_idx:
            i = rng.choice(data_idx)
            items.insert(i + 1, Item(items[i].side, items[i].data))
            duplicated += t.sport == 8000
        streams.append((start, items))
        x = rng.random()
        if x < 0.3:
            for s in other_traffic(rng, client, server, tags):
                streams.append((BASE_TS_US + rng.randrange(duration), s))
    return Case("mix10k", f"{sessions} interleaved sessions on port 8000 (some IPv6, VLAN, QinQ, "
                "padded, reordered or duplicated segments), TCP on port 443, ARP/ICMP/UDP: "
                "everything forwarded", interleave(streams, rng, gap=(100, 20000)),
                counters={"tcp_out_of_order_held": reordered,
                          "tcp_identical_retransmissions": duplicated})


# --------------------------------------------------------------------------------------------
# inspection integrity (docs/normalisation.md, "TCP"): Sluice's stream stays the host's
# --------------------------------------------------------------------------------------------

def other_syn(t: Tcp, isn: int, **kw) -> Item:
    """A client SYN on t's 5-tuple with another ISN (t's own numbering untouched)."""
    return t.send(True, flags="S", seq=isn, ack=0, options=SYN_OPTIONS, **kw)


def case_syn_mismatch() -> Case:
    rng = random.Random(201)
    server = v4server(1)
    streams = []
    # A: half-open, a second SYN with another ISN: SYN-RECEIVED keeps the first ISN. Dropped.
    a = Tcp(v4client(201), server, 54000, cisn=100_000, sisn=200_000)
    it = [a.syn(), other_syn(a, 300_000, fate="drop"), a.synack(), a.send(True)]
    streams.append((BASE_TS_US, it + session_items(a, rng, prompt_len=400, answer_len=600,
                                                    handshake=False)))
    # B: established, a SYN with another ISN: the host answers a challenge ACK. Dropped.
    b = Tcp(v4client(202), server, 54001, cisn=400_000, sisn=500_000)
    it = b.handshake() + [b.send(True, p) for p in split(http_request(rng, 800), 700)]
    it.append(other_syn(b, 9_400_000, fate="drop"))
    streams.append((BASE_TS_US + 300, it + finish(b, rng)))
    # C: the client's FIN acknowledged, the server still answering (CLOSE-WAIT): a higher SYN is
    # no new connection yet. Dropped.
    c = Tcp(v4client(203), server, 54002, cisn=700_000, sisn=800_000)
    it = c.handshake() + [c.send(True, http_request(rng, 300)), c.send(True, fin=True),
                          c.send(False)]
    it.append(other_syn(c, c.c_nxt + 1_000_000, fate="drop"))
    it += [c.send(False, http_response(rng, 600)), c.send(True), c.send(False, fin=True),
           c.send(True)]
    streams.append((BASE_TS_US + 600, it))
    # D: the server closed first and both FINs are acknowledged (TIME-WAIT): a lower ISN is
    # dropped, a higher one opens a new connection that passes.
    d = Tcp(v4client(204), server, 54003, cisn=5_000_000, sisn=6_000_000)
    it = session_items(d, rng, prompt_len=300, answer_len=500, close="server")
    it.append(other_syn(d, 1_000_000, fate="drop"))
    d2 = Tcp(d.client, d.server, d.cport, cisn=d.c_nxt + 100_000, sisn=16_000_000)
    streams.append((BASE_TS_US + 900, it + session_items(d2, rng, prompt_len=300,
                                                         answer_len=500)))
    # F: the client closed first and both FINs are acknowledged (the server socket is CLOSED):
    # a lower ISN opens a new connection.
    f = Tcp(v4client(206), server, 54005, cisn=30_000_000, sisn=31_000_000)
    it = session_items(f, rng, prompt_len=300, answer_len=500, close="client")
    f2 = Tcp(f.client, f.server, f.cport, cisn=1_000, sisn=32_000_000)
    streams.append((BASE_TS_US + 1500, it + session_items(f2, rng, prompt_len=300,
                                                          answer_len=500)))
    # E: after a RST at the exact sequence number, any SYN opens a new connection.
    e = Tcp(v4client(205), server, 54004, cisn=9_000_000, sisn=10_000_000)
    it = e.handshake() + [e.send(True, http_request(rng, 300)), e.send(False),
                          e.send(True, flags="RA")]
    e2 = Tcp(e.client, e.server, e.cport, cisn=10, sisn=20_000_000)
    streams.append((BASE_TS_US + 1200, it + session_items(e2, rng, prompt_len=300,
                                                          answer_len=500)))
    return Case("syn_mismatch", "a SYN the host would ignore is dropped: another ISN while "
                "half-open or established, a SYN while closing, a lower ISN in TIME-WAIT; a "
                "higher ISN in TIME-WAIT, any ISN once a client-first close is over, and any ISN "
                "after an exact RST open a new flow",
                interleave(streams, rng), counters={"drop_tcp_unacceptable_syn": 4})


def case_rst_exact() -> Case:
    rng = random.Random(202)
    server = v4server(1)
    streams = []
    # A: a client RST inside the window but not at RCV.NXT (a challenge ACK at the host): dropped,
    # the connection carries on.
    a = Tcp(v4client(210), server, 54100, cisn=1_000_000, sisn=2_000_000)
    it = a.handshake() + [a.send(True, p) for p in split(http_request(rng, 800), 700)]
    it.append(a.send(True, flags="RA", seq=a.c_nxt + 100, fate="drop"))
    streams.append((BASE_TS_US, it + finish(a, rng)))
    # B: a server RST one below RCV.NXT: dropped.
    b = Tcp(v4client(211), server, 54101, cisn=3_000_000, sisn=4_000_000)
    it = b.handshake() + [b.send(True, http_request(rng, 300)),
                          b.send(False, http_response(rng, 400))]
    it.append(b.send(False, flags="R", seq=b.s_nxt - 1, fate="drop"))
    it += [b.send(True), b.send(True, fin=True), b.send(False, fin=True), b.send(True)]
    streams.append((BASE_TS_US + 300, it))
    # C: an inexact RST, then a SYN with another ISN: today's desync (the RST closes the flow for
    # Sluice, the SYN re-seeds it, the host keeps the first connection). Both dropped.
    c = Tcp(v4client(212), server, 54102, cisn=5_000_000, sisn=6_000_000)
    it = c.handshake() + [c.send(True, http_request(rng, 300))]
    it.append(c.send(True, flags="R", seq=c.c_nxt + 1000, fate="drop"))
    it.append(other_syn(c, c.cisn + 777_777, fate="drop"))
    streams.append((BASE_TS_US + 600, it + finish(c, rng)))
    # D: an exact RST is forwarded; what follows on the flow is dropped.
    d = Tcp(v4client(213), server, 54103, cisn=7_000_000, sisn=8_000_000)
    it = d.handshake() + [d.send(True, http_request(rng, 300)), d.send(False),
                          d.send(False, flags="RA"),
                          d.send(True, b"late bytes after the reset", fate="drop")]
    streams.append((BASE_TS_US + 900, it))
    # E: the server refuses the SYN with RST|ACK <SEQ=0><ACK=ISN+1>: forwarded.
    e = Tcp(v4client(214), server, 54104, cisn=9_000_000, sisn=0)
    streams.append((BASE_TS_US + 1200, [e.syn(), e.send(False, flags="RA", seq=0)]))
    return Case("rst_exact", "a RST not at RCV.NXT (in the window or not) is dropped and changes "
                "nothing, also before a SYN with another ISN; an exact RST is forwarded and the "
                "flow's later packets dropped; a RST|ACK refusing a SYN is forwarded",
                interleave(streams, rng),
                counters={"drop_tcp_rst_not_exact": 3, "drop_tcp_unacceptable_syn": 1,
                          "drop_tcp_after_rst": 1})


def short_request(rng: random.Random, missing: int) -> tuple[bytes, bytes]:
    """A chat request whose Content-Length counts `missing` bytes more than the body it carries,
    and the JSON whitespace that completes it."""
    whole = http_request(rng, 200)
    head, body = whole.split(b"\r\n\r\n", 1)
    head = head.replace(b"Content-Length: %d" % len(body),
                        b"Content-Length: %d" % (len(body) + missing))
    return head + b"\r\n\r\n" + body, b"\r\n"[:missing]


def case_rst_resync() -> Case:
    rng = random.Random(206)
    server = v4server(1)
    streams = []
    stale = [("Timestamp", (1, 0))]
    md5 = [("NOP", None), ("NOP", None), (19, b"\x11" * 16)]
    # The red team's resynchronisation (redteam/found tcp_rst_resync): the request but its last
    # 2 bytes; a RST Sluice would take as exact but Linux ignores; a SYN at RCV.NXT - 1 (Sluice
    # used to open a new flow on it, Linux answers a challenge ACK); then the 2 bytes, which the
    # host appends to the body. Now the byte and the RST the host ignores are dropped, the SYN
    # changes nothing and the 2 bytes complete the request on its own flow.
    for n, variant in enumerate(("paws", "md5rst", "md5data")):
        t = Tcp(v4client(220 + n), server, 54200 + n, cisn=1000 + n * 1_000_000, sisn=5000)
        first, last = short_request(rng, 2)
        it = t.handshake() + [t.send(True, first, options=[("Timestamp", (1001, 1000))]),
                              t.send(False)]
        if variant == "md5rst":
            it.append(t.send(True, flags="R", seq=t.c_nxt, options=md5, fate="drop"))
        else:  # one byte the host drops (PAWS, or an MD5 option), then a RST one above it
            it.append(t.send(True, b"\r", seq=t.c_nxt, fate="drop",
                             options=stale if variant == "paws" else md5))
            it.append(t.send(True, flags="R", seq=t.c_nxt + 1, fate="drop"))
        it += [t.send(False),  # the challenge ACK
               t.send(True, flags="S", seq=t.c_nxt - 1, ack=0, options=SYN_OPTIONS),
               t.send(False),
               t.send(True, last, options=[("Timestamp", (1002, 1000))])]
        streams.append((BASE_TS_US + 300 * n, it + finish(t, rng)))
    return Case("rst_resync", "a RST or a byte the host drops (a stale timestamp, a TCP-MD5 "
                "option) is dropped, so a later SYN opens no new stream and the request's last "
                "bytes complete it on its own flow",
                interleave(streams, rng),
                counters={"drop_tcp_paws": 1, "drop_tcp_signature_option": 2,
                          "drop_tcp_rst_not_exact": 2, "flows_created": 3,
                          # the SYN at RCV.NXT - 1 (Linux: a challenge ACK) changes nothing
                          "tcp_identical_retransmissions": 3})


def case_host_drops() -> Case:
    rng = random.Random(207)
    server = v4server(1)
    streams = []
    # A: a SYN carrying data (TCP Fast Open): dropped; the plain SYN after it opens the flow.
    a = Tcp(v4client(230), server, 54300, cisn=100_000, sisn=200_000)
    it = [a.send(True, b"GET / HTTP/1.1\r\n", flags="S", seq=a.cisn, ack=0,
                 options=SYN_OPTIONS, fate="drop")]
    streams.append((BASE_TS_US, it + session_items(a, rng, prompt_len=300, answer_len=400)))
    # B: client bytes and a FIN before the server's SYN-ACK: dropped.
    b = Tcp(v4client(231), server, 54301, cisn=300_000, sisn=400_000)
    it = [b.syn(), b.send(True, b"POST /v1/chat", seq=b.c_nxt, ack=0, flags="PA", fate="drop"),
          b.send(True, seq=b.c_nxt, ack=0, flags="FA", fate="drop"), b.synack(), b.send(True)]
    streams.append((BASE_TS_US + 300, it + session_items(b, rng, prompt_len=300, answer_len=400,
                                                         handshake=False)))
    # C: bytes without ACK (Linux discards them once the SYN is answered), a SYN+FIN: dropped.
    c = Tcp(v4client(232), server, 54302, cisn=500_000, sisn=600_000)
    it = c.handshake() + [c.send(True, b"POST /x HTTP/1.1\r\n", seq=c.c_nxt, flags="P",
                                 fate="drop"),
                          c.send(True, seq=c.cisn, ack=0, flags="SF", options=SYN_OPTIONS,
                                 fate="drop")]
    streams.append((BASE_TS_US + 600, it + session_items(c, rng, prompt_len=300, answer_len=400,
                                                         handshake=False)))
    return Case("host_drops", "segments a Linux host discards are dropped: a SYN with data, "
                "client bytes or FIN before the SYN-ACK, bytes without ACK, SYN+FIN",
                interleave(streams, rng),
                counters={"drop_tcp_data_before_handshake": 3, "drop_tcp_no_ack": 1,
                          "drop_tcp_bad_flags": 1})


def case_fin_sequence() -> Case:
    rng = random.Random(203)
    server = v4server(1)
    streams = []
    # A: the request's last part with FIN ahead of a hole (held), then bytes over the FIN's
    # sequence number (dropped), then the hole filled: the FIN ends the request.
    a = Tcp(v4client(220), server, 54200, cisn=1_000_000, sisn=2_000_000)
    it = a.handshake()
    req = http_request(rng, 900)
    p0, p1, p2 = req[:300], req[300:600], req[600:]
    base = a.c_nxt
    it.append(a.send(True, p2, seq=base + 600, flags="FPA"))
    it.append(a.send(True, b"bytes over the FIN", seq=base + len(req), fate="drop"))
    it.append(a.send(True, p1, seq=base + 300))
    it.append(a.send(True, p0, seq=base))
    a.c_nxt = (base + len(req) + 1) % MOD32
    it += [a.send(False), a.send(False, http_response(rng, 500)), a.send(True),
           a.send(False, fin=True), a.send(True)]
    streams.append((BASE_TS_US, it))
    # B: a FIN placed before bytes already held: dropped; the part resent without FIN passes.
    b = Tcp(v4client(221), server, 54201, cisn=3_000_000, sisn=4_000_000)
    it = b.handshake()
    req = http_request(rng, 900)
    p0, p1, p2 = req[:300], req[300:600], req[600:]
    base = b.c_nxt
    it.append(b.send(True, p2, seq=base + 600))
    it.append(b.send(True, p1, seq=base + 300, flags="FPA", fate="drop"))
    it.append(b.send(True, p0, seq=base))
    it.append(b.send(True, p1, seq=base + 300))
    b.c_nxt = (base + len(req)) % MOD32
    streams.append((BASE_TS_US + 300, it + finish(b, rng)))
    return Case("fin_sequence", "a FIN takes effect only in sequence: bytes over a FIN held ahead "
                "of a hole, and a FIN before bytes already held, are dropped",
                interleave(streams, rng),
                counters={"drop_tcp_beyond_fin": 2, "tcp_out_of_order_held": 3})


def case_wrong_side() -> Case:
    rng = random.Random(204)
    server = v4server(1)
    # A: a frame on the client port with the server's addresses acknowledges the client's
    # unacknowledged bytes (dropped), so that a retransmission with other bytes would pass
    # unchecked; it is compared, differs, and the flow is killed.
    a = Tcp(v4client(230), server, 54300, cisn=1_000_000, sisn=2_000_000)
    it = a.handshake()
    req = split(http_request(rng, 900), 600)
    start = a.c_nxt
    it.append(a.send(True, req[0]))
    forged_ack = a.send(False, fate="drop")
    forged_ack.side = CLIENT
    it.append(forged_ack)
    it.append(a.send(True, different(req[0]), seq=start, fate="drop",
                     emits=a.rsts(client_next=a.c_nxt, server_next=a.s_nxt)))
    # B: a frame on the server port with the client's addresses (request bytes): dropped; the
    # session carries on.
    b = Tcp(v4client(231), server, 54301, cisn=3_000_000, sisn=4_000_000)
    it2 = b.handshake()
    forged_data = b.send(True, b"POST /v1/chat/completions HTTP/1.1\r\n", seq=b.c_nxt,
                         fate="drop")
    forged_data.side = SERVER
    it2.append(forged_data)
    it2 += session_items(b, rng, prompt_len=400, answer_len=600, handshake=False)
    items = interleave([(BASE_TS_US, it), (BASE_TS_US + 300, it2)], rng)
    args = []
    for forged, side in ((forged_ack, CLIENT), (forged_data, SERVER)):
        args += ["--arrived-on", f"{next(i for i, x in enumerate(items) if x is forged) + 1}:{side}"]
    return Case("wrong_side", "direction comes from the arrival port: a server-addressed ACK on "
                "the client port and client-addressed data on the server port are dropped; the "
                "retransmission the forged ACK meant to let through is compared and kills the flow",
                items, args=args,
                counters={"drop_tcp_wrong_side": 2, "drop_tcp_conflicting_retransmission": 1})


def without_urgent(data: bytes) -> bytes:
    """The frame with URG and the urgent pointer cleared, checksum recomputed."""
    pkt = Ether(data)
    pkt[TCP].flags = int(pkt[TCP].flags) & ~0x20
    pkt[TCP].urgptr = 0
    del pkt[TCP].chksum
    return bytes(pkt)


def urgent_items(dropped: bool) -> list[Item]:
    rng = random.Random(205)
    t = Tcp(v4client(240), v4server(1), 54400, cisn=1_000_000, sisn=2_000_000)
    it = t.handshake()
    req = split(http_request(rng, 900), 500)
    # The client's first part with URG and an urgent pointer into it, then the same bytes
    # again without URG (a retransmission when the first one was dropped).
    start = t.c_nxt
    urgent = t.send(True, req[0], flags="PAU", fate="drop" if dropped else "fwd")
    pkt = Ether(urgent.data)
    pkt[TCP].urgptr = 7
    del pkt[TCP].chksum
    urgent.data = bytes(pkt)
    urgent.forwarded = without_urgent(urgent.data)
    it.append(urgent)
    it.append(t.send(True, req[0], seq=start))
    it += [t.send(True, p) for p in req[1:]]
    it.append(t.send(False))
    resp = split(http_response(rng, 800), 400)
    start = t.s_nxt
    urgent = t.send(False, resp[0], flags="PAU", fate="drop" if dropped else "fwd")
    pkt = Ether(urgent.data)
    pkt[TCP].urgptr = 1
    del pkt[TCP].chksum
    urgent.data = bytes(pkt)
    urgent.forwarded = without_urgent(urgent.data)
    it.append(urgent)
    it.append(t.send(False, resp[0], seq=start))
    it += [t.send(False, p) for p in resp[1:]]
    it += [t.send(True), t.send(True, fin=True), t.send(False, fin=True), t.send(True)]
    return timeline(it)


def case_urgent() -> Case:
    return Case("urgent", "URG on an inspected flow (client and server): URG and the urgent "
                "pointer cleared, checksum fixed, forwarded (inspect.urgent_data: normalise)",
                urgent_items(False),
                counters={"tcp_urgent_cleared": 2, "tcp_identical_retransmissions": 2})


def case_urgent_drop() -> Case:
    return Case("urgent_drop", "URG on an inspected flow with inspect.urgent_data: drop: dropped; "
                "the same bytes resent without URG pass", urgent_items(True),
                config={"inspect": {"urgent_data": "drop"}}, counters={"drop_tcp_urgent": 2})



CASES = [case_basic, case_vlan, case_ipv6, case_bad_checksum, case_bad_checksum_pass,
         case_reorder, case_reorder_limits, case_conflict, case_midstream, case_midstream_pass, case_policy_drop,
         case_fragments, case_fragments_pass, case_table_full, case_table_full_drop,
         case_table_full_pass, case_table_full_expiry, case_timeouts, case_seq_wrap,
         case_port_reuse, case_ports, case_tcp_edges, case_retransmit,
         case_retransmit_resegmented, case_retransmit_old, case_malformed, case_mix10k,
         case_syn_mismatch, case_rst_exact, case_rst_resync, case_host_drops, case_fin_sequence, case_wrong_side, case_urgent,
         case_urgent_drop]
CASE_NAMES = [f.__name__[len("case_"):] for f in CASES]


# --------------------------------------------------------------------------------------------
# writing a case
# --------------------------------------------------------------------------------------------

def yaml_text(config: dict) -> str:
    lines = ["# generated by tests/pcap/make_captures.py"]

    def emit(d: dict, indent: int) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                lines.append(" " * indent + f"{k}:")
                emit(v, indent + 2)
            elif isinstance(v, list):
                lines.append(" " * indent + f"{k}: [{', '.join(str(x) for x in v)}]")
            else:
                lines.append(" " * indent + f"{k}: {v}")
    emit(config, 0)
    return "\n".join(lines) + "\n"


def server_nets(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--server-net"]


def arrivals(args: list[str]) -> list[tuple[int, str]]:
    """The --arrived-on N:SIDE arguments: (1-based packet number, side)."""
    out = []
    for i, a in enumerate(args):
        if a == "--arrived-on":
            number, side = args[i + 1].split(":")
            out.append((int(number), side))
    return out


def expected_outputs(items: list[Item]) -> dict[str, list[tuple[int, bytes]]]:
    out = {TO_CLIENT: [], TO_SERVER: []}
    for item in items:
        if item.fate == "fwd":
            data = item.data if item.forwarded is None else item.forwarded
            out[TO_SERVER if item.side == CLIENT else TO_CLIENT].append((item.ts, data))
        for where, data in item.emits:
            out[where].append((item.ts, data))
    return out


def is_rst(frame: bytes) -> bool:
    return bool(parse_frame(frame).flags & 0x04)


def expected_counters(case: Case, out) -> dict:
    counters = {"mbufs_in_use_after_run": 0}
    for side in (CLIENT, SERVER):
        mine = [i for i in case.items if i.side == side]
        counters[f"rx_{side}_packets"] = len(mine)
        counters[f"rx_{side}_bytes"] = sum(len(i.data) for i in mine)
    for side, key in ((CLIENT, TO_CLIENT), (SERVER, TO_SERVER)):
        counters[f"tx_{side}_packets"] = len(out[key])
        counters[f"tx_{side}_bytes"] = sum(len(d) for _, d in out[key])
    # Unless the case says otherwise: no TCP surprises, nothing passed by a policy.
    for name in ("tcp_out_of_order_held", "tcp_identical_retransmissions", "flows_evicted",
                 "midstream_passed", "fragments_passed", "bad_checksum_passed",
                 "flow_table_full_passed"):
        counters[name] = 0
    counters["rst_sent"] = sum(1 for i in case.items for _, d in i.emits if is_rst(d))
    counters["tcp_flows_killed"] = sum(1 for i in case.items
                                       if any(is_rst(d) for _, d in i.emits))
    counters["tcp_killed_flow_answered"] = sum(1 for i in case.items
                                               for _, d in i.emits if not is_rst(d))
    counters["tcp_killed_flow_absorbed"] = sum(1 for i in case.items
                                               if i.fate == "answered" and not i.emits)
    tcp_ports = case.config.get("inspect", {}).get("tcp_ports", [8000])
    other = 0
    ranges: dict[tuple, list] = {}  # per flow direction: [base seq, [(start, end) offsets]]
    for item in case.items:
        if item.fate != "fwd":
            continue
        p = parse_frame(item.data)
        if p.tcp and (p.sport in tcp_ports or p.dport in tcp_ports):
            if p.payload_len:
                entry = ranges.setdefault((p.vlans, p.src, p.sport, p.dst, p.dport), [p.seq, []])
                start = (p.seq - entry[0] + (1 << 31)) % MOD32 - (1 << 31)
                entry[1].append((start, start + p.payload_len))
        elif not p.fragment:
            other += 1
    counters["other_traffic_passed"] = other
    if case.auto_delivered:
        total = 0
        for _, spans in ranges.values():
            end = None
            for a, b in sorted(spans):
                if end is None or a >= end:
                    total += b - a
                    end = b
                elif b > end:
                    total += b - end
                    end = b
        counters["tcp_payload_bytes_delivered"] = total
    counters.update(case.counters)
    return {k: v for k, v in counters.items() if v is not None}


def write_case(case: Case, outdir: str) -> dict:
    tcp_ports = case.config.get("inspect", {}).get("tcp_ports", [8000])
    sides = replay_sides([i.data for i in case.items], tcp_ports, server_nets(case.args))
    for number, side in arrivals(case.args):  # --arrived-on N:SIDE overrides the rule
        sides[number - 1] = side
    for index, (item, side) in enumerate(zip(case.items, sides)):
        if item.side != side:
            raise AssertionError(f"{case.name}: packet {index}: generator says it arrived on the "
                                 f"{item.side} side, the replay rules say {side}")
    timestamps = [i.ts for i in case.items]
    if timestamps != sorted(timestamps):
        raise AssertionError(f"{case.name}: timestamps go backwards")
    d = os.path.join(outdir, case.name)
    os.makedirs(d, exist_ok=True)
    write_pcap(os.path.join(d, "in.pcap"), [(i.ts, i.data) for i in case.items])
    out = expected_outputs(case.items)
    write_pcap(os.path.join(d, "expected_to_client.pcap"), out[TO_CLIENT])
    write_pcap(os.path.join(d, "expected_to_server.pcap"), out[TO_SERVER])
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(yaml_text(case.config))
    meta = {
        "name": case.name,
        "description": case.description,
        "args": case.args,
        "packets": len(case.items),
        "dropped": sum(1 for i in case.items if i.fate == "drop"),
        "counters": expected_counters(case, out),
        "check_drop_totals": case.check_drop_totals,
        # Input index of every packet in each expected output, to point at the cause of a diff.
        "sources": {TO_CLIENT: [], TO_SERVER: []},
    }
    for index, item in enumerate(case.items):
        if item.fate == "fwd":
            meta["sources"][TO_SERVER if item.side == CLIENT else TO_CLIENT].append(index)
        for where, _ in item.emits:
            meta["sources"][where].append(index)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def select(names: list[str] | None) -> list:
    if not names:
        return list(CASES)
    chosen = []
    for f, n in zip(CASES, CASE_NAMES):
        if any(n == want or n.startswith(want + "_") for want in names):
            chosen.append(f)
    unknown = [w for w in names if not any(n == w or n.startswith(w + "_") for n in CASE_NAMES)]
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASE_NAMES)}")
    return chosen


def generate(outdir: str, names: list[str] | None = None) -> list[str]:
    written = []
    for f in select(names):
        case = f()
        write_case(case, outdir)
        written.append(case.name)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--case", action="append", help="a case (or its variants NAME_*); repeatable")
    args = parser.parse_args()
    for name in generate(args.outdir, args.case):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
