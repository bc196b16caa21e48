#!/usr/bin/python3
"""What a real Linux TCP socket does with the segments Sluice normalises (docs/normalisation.md,
"TCP"): the reference the tracker follows, checked on this kernel.

Run as root with Debian's /usr/bin/python3 (scapy 2.5):

    sudo /usr/bin/python3 tests/e2e/linux_tcp_reference.py

It creates two network namespaces joined by a veth pair: `sl-ref-srv` holds a listening socket on
198.19.0.1:8000; `sl-ref-cli` holds the other end, where scapy sends crafted segments from
198.18.0.2, an address no interface owns (so no local stack answers for the client), and sniffs
the replies. Both namespaces are removed at the end. Prints one PASS/FAIL line per behaviour and
exits 1 if any differs from what Sluice assumes (77, meson's "skipped", when not root).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

SRV_NS, CLI_NS = "sl-ref-srv", "sl-ref-cli"
SRV_IP, CLI_IP = "198.19.0.1", "198.18.0.2"
PORT = 8000
results: list[bool] = []


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def setup() -> None:
    teardown()
    sh("ip", "netns", "add", SRV_NS)
    sh("ip", "netns", "add", CLI_NS)
    sh("ip", "link", "add", "sl-ref-s", "netns", SRV_NS, "type", "veth", "peer", "name",
       "sl-ref-c", "netns", CLI_NS)
    for ns, dev in ((SRV_NS, "sl-ref-s"), (CLI_NS, "sl-ref-c")):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", SRV_NS, "addr", "add", f"{SRV_IP}/15", "dev", "sl-ref-s")
    sh("ip", "-n", SRV_NS, "neigh", "add", CLI_IP, "lladdr", mac_of(CLI_NS, "sl-ref-c"), "dev",
       "sl-ref-s")


def mac_of(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", dev], check=True,
                         capture_output=True, text=True).stdout
    return out.split("link/ether ")[1].split()[0]


def teardown() -> None:
    for ns in (SRV_NS, CLI_NS):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def enter(ns: str) -> None:
    """Moves the calling thread into namespace `ns` (threads it starts later follow it)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, clone_newnet) != 0:
        raise OSError(ctypes.get_errno(), f"setns {ns}")
    os.close(fd)


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


class Server:
    """A listening socket in the server namespace; accepted connections' reads are recorded."""

    def __init__(self) -> None:
        enter(SRV_NS)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((SRV_IP, PORT))
        self.listener.listen(16)
        self.reads: dict[int, bytes] = {}
        self.errors: dict[int, str] = {}
        self.accepted: list[int] = []
        self.conns: dict[int, socket.socket] = {}
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        while True:
            conn, (_, port) = self.listener.accept()
            self.accepted.append(port)
            self.conns[port] = conn
            threading.Thread(target=self.read_loop, args=(port, conn), daemon=True).start()

    def read_loop(self, port: int, conn: socket.socket) -> None:
        data = b""
        try:
            while chunk := conn.recv(4096):
                data += chunk
                self.reads[port] = data
            self.errors[port] = "eof"
        except OSError as e:
            self.errors[port] = e.strerror or str(e)
        self.reads[port] = data


def main() -> int:
    if os.geteuid() != 0:
        print("linux_tcp_reference: SKIP: must run as root (creates network namespaces)")
        return 77  # meson's "skipped"
    setup()
    try:
        server = Server()  # this thread now lives in the server namespace...
        enter(CLI_NS)      # ...and the rest of it (scapy) in the client's; the socket stays
        from scapy.all import IP, TCP, Ether, Raw, conf, sendp, sniff, srp1  # noqa: E402
        conf.verb = 0
        l2 = Ether(src=mac_of(CLI_NS, "sl-ref-c"), dst=mac_of(SRV_NS, "sl-ref-s"))

        def send(pkt, iface):
            sendp(l2 / pkt, iface=iface)

        def sr1(pkt, timeout, iface):
            return srp1(l2 / pkt, timeout=timeout, iface=iface)

        run(server, IP, TCP, Raw, sr1, send, sniff)
    finally:
        teardown()
    return 0 if all(results) else 1


def run(server, IP, TCP, Raw, sr1, send, sniff) -> None:
    def seg(sport, flags, seq, ack=0, data=b"", **kw):
        pkt = IP(src=CLI_IP, dst=SRV_IP) / TCP(sport=sport, dport=PORT, flags=flags, seq=seq,
                                              ack=ack, window=65535, **kw)
        return pkt / Raw(data) if data else pkt

    def answer(pkt, timeout=1.0):
        return sr1(pkt, timeout=timeout, iface="sl-ref-c")

    def replies_to(pkt, wait=0.6):
        got = []
        t = threading.Thread(target=lambda: got.extend(sniff(
            iface="sl-ref-c", timeout=wait,
            lfilter=lambda p: p.haslayer(TCP) and p[TCP].dport == pkt[TCP].sport)))
        t.start()
        time.sleep(0.1)
        send(pkt, iface="sl-ref-c")
        t.join()
        return got

    def connect(sport, isn):
        synack = answer(seg(sport, "S", isn))
        sisn = synack[TCP].seq
        send(seg(sport, "A", isn + 1, sisn + 1), iface="sl-ref-c")
        time.sleep(0.2)
        return sisn

    # 1. SYN-RECEIVED keeps the first ISN: a SYN with another one changes nothing.
    sport = 41001
    synack = answer(seg(sport, "S", 1000))
    sisn = synack[TCP].seq
    other = replies_to(seg(sport, "S", 900_000))
    send(seg(sport, "A", 1001, sisn + 1), iface="sl-ref-c")
    send(seg(sport, "PA", 1001, sisn + 1, b"first-isn"), iface="sl-ref-c")
    time.sleep(0.3)
    flags = [str(p[TCP].flags) for p in other]
    check("syn_recv_keeps_first_isn", server.reads.get(sport) == b"first-isn",
          f"reply to the other SYN: {flags}, read {server.reads.get(sport)!r}")

    # 1b. The same with the other ISN inside the SYN-ACK's window: reported, not asserted (the
    #     embryonic connection may be reset); Sluice drops such a SYN either way.
    sport = 41008
    synack = answer(seg(sport, "S", 2000))
    sisn = synack[TCP].seq
    other = replies_to(seg(sport, "S", 2010))
    send(seg(sport, "A", 2001, sisn + 1), iface="sl-ref-c")
    send(seg(sport, "PA", 2001, sisn + 1, b"first-isn"), iface="sl-ref-c")
    time.sleep(0.3)
    print(f"INFO syn_recv_in_window_syn: replies {[str(p[TCP].flags) for p in other]}, "
          f"read {server.reads.get(sport)!r}", flush=True)

    # 2. ESTABLISHED: a SYN with another ISN is answered by a challenge ACK, nothing else.
    sport = 41002
    sisn = connect(sport, 5000)
    got = replies_to(seg(sport, "S", 77_000))
    send(seg(sport, "PA", 5001, sisn + 1, b"still-here"), iface="sl-ref-c")
    time.sleep(0.3)
    check("established_ignores_syn", [str(p[TCP].flags) for p in got] == ["A"]
          and server.reads.get(sport) == b"still-here",
          f"replies {[str(p[TCP].flags) for p in got]}, read {server.reads.get(sport)!r}")

    # 3. RFC 5961: a RST in the window but not at RCV.NXT gets a challenge ACK and resets nothing;
    #    one exactly at RCV.NXT resets.
    sport = 41003
    sisn = connect(sport, 10_000)
    send(seg(sport, "PA", 10_001, sisn + 1, b"abc"), iface="sl-ref-c")
    time.sleep(0.2)
    got = replies_to(seg(sport, "R", 10_004 + 100))
    send(seg(sport, "PA", 10_004, sisn + 1, b"def"), iface="sl-ref-c")
    time.sleep(0.3)
    check("inexact_rst_ignored", server.reads.get(sport) == b"abcdef"
          and sport not in server.errors,
          f"replies {[str(p[TCP].flags) for p in got]}, read {server.reads.get(sport)!r}")
    send(seg(sport, "R", 10_007), iface="sl-ref-c")
    time.sleep(0.3)
    check("exact_rst_resets", "reset" in server.errors.get(sport, "").lower(),
          f"server socket: {server.errors.get(sport)}")

    # 4. Urgent data: the byte before the urgent pointer leaves the stream (SO_OOBINLINE off).
    sport = 41004
    sisn = connect(sport, 20_000)
    send(seg(sport, "PAU", 20_001, sisn + 1, b"abcdef", urgptr=3), iface="sl-ref-c")
    time.sleep(0.3)
    check("urgent_byte_removed", server.reads.get(sport) == b"abdef",
          f"read {server.reads.get(sport)!r} of b'abcdef' with urgptr 3")
    sport = 41005
    sisn = connect(sport, 25_000)
    send(seg(sport, "PA", 25_001, sisn + 1, b"abcdef"), iface="sl-ref-c")
    time.sleep(0.3)
    check("urg_cleared_reads_in_place", server.reads.get(sport) == b"abcdef",
          f"read {server.reads.get(sport)!r}")

    # 5. A FIN ahead of a hole ends the stream where it is: bytes over it are never read.
    sport = 41006
    sisn = connect(sport, 30_000)
    send(seg(sport, "FPA", 30_007, sisn + 1, b"ghi"), iface="sl-ref-c")     # FIN at 30_010
    send(seg(sport, "PA", 30_010, sisn + 1, b"OVER"), iface="sl-ref-c")     # over the FIN
    send(seg(sport, "PA", 30_001, sisn + 1, b"abcdef"), iface="sl-ref-c")   # fills the hole
    time.sleep(0.3)
    check("nothing_read_over_a_held_fin", server.reads.get(sport) == b"abcdefghi"
          and server.errors.get(sport) == "eof",
          f"read {server.reads.get(sport)!r}, then {server.errors.get(sport)}")

    # 6. TIME-WAIT (the server closed first) takes a new SYN only above the old sequence space.
    sport = 41007
    sisn = connect(sport, 40_000)
    time.sleep(0.2)
    server.conns[sport].shutdown(socket.SHUT_RDWR)   # server FIN: FIN-WAIT-1
    time.sleep(0.2)
    send(seg(sport, "FA", 40_001, sisn + 2), iface="sl-ref-c")  # ACK its FIN, send ours
    time.sleep(0.3)                                  # the server is in TIME-WAIT
    low = replies_to(seg(sport, "S", 1000))
    high = replies_to(seg(sport, "S", 40_002 + 1_000_000))
    check("time_wait_takes_only_a_higher_isn",
          [str(p[TCP].flags) for p in low] != ["SA"] and "SA" in [str(p[TCP].flags) for p in high],
          f"lower ISN: {[str(p[TCP].flags) for p in low]}, "
          f"higher ISN: {[str(p[TCP].flags) for p in high]}")

    # 7. The client closed first: the server goes LAST-ACK, then CLOSED at the ACK of its FIN,
    #    and the listener takes a SYN with any ISN, a lower one included.
    sport = 41009
    sisn = connect(sport, 50_000)
    send(seg(sport, "FA", 50_001, sisn + 1), iface="sl-ref-c")  # client FIN: CLOSE-WAIT
    time.sleep(0.3)
    server.conns[sport].shutdown(socket.SHUT_RDWR)               # server FIN: LAST-ACK
    time.sleep(0.3)
    send(seg(sport, "A", 50_002, sisn + 2), iface="sl-ref-c")   # ACK of its FIN: CLOSED
    time.sleep(0.3)
    low = replies_to(seg(sport, "S", 1000))
    check("closed_after_client_first_close_takes_any_isn",
          "SA" in [str(p[TCP].flags) for p in low],
          f"lower ISN: {[str(p[TCP].flags) for p in low]}")

    # 8. Segments Linux discards while Sluice used to read them (the red team's resync): an
    #    exact RST or a byte carrying a TCP-MD5 option (no key on the socket), bytes without ACK.
    md5 = [("NOP", None), ("NOP", None), (19, b"\x11" * 16)]
    sport = 41010
    sisn = connect(sport, 60_000)
    send(seg(sport, "PA", 60_001, sisn + 1, b"abc"), iface="sl-ref-c")
    send(seg(sport, "R", 60_004, options=md5), iface="sl-ref-c")
    send(seg(sport, "PA", 60_004, sisn + 1, b"X", options=md5), iface="sl-ref-c")
    send(seg(sport, "P", 60_004, 0, b"Y"), iface="sl-ref-c")
    send(seg(sport, "PA", 60_004, sisn + 1, b"def"), iface="sl-ref-c")
    time.sleep(0.3)
    check("md5_and_no_ack_segments_discarded", server.reads.get(sport) == b"abcdef"
          and sport not in server.errors,
          f"read {server.reads.get(sport)!r}, error {server.errors.get(sport)}")

    # 9. PAWS (RFC 7323 §5): with timestamps on both SYNs, a byte whose TSval is older than
    #    TS.Recent is discarded; a RST is not checked.
    sport = 41011
    synack = answer(seg(sport, "S", 70_000, options=[("Timestamp", (100_000, 0))]))
    sisn = synack[TCP].seq
    their = dict(synack[TCP].options).get("Timestamp", (0, 0))[0]
    send(seg(sport, "A", 70_001, sisn + 1, options=[("Timestamp", (100_001, their))]),
         iface="sl-ref-c")
    send(seg(sport, "PA", 70_001, sisn + 1, b"abc", options=[("Timestamp", (100_002, their))]),
         iface="sl-ref-c")
    send(seg(sport, "PA", 70_004, sisn + 1, b"X", options=[("Timestamp", (1, their))]),
         iface="sl-ref-c")
    send(seg(sport, "PA", 70_004, sisn + 1, b"def", options=[("Timestamp", (100_003, their))]),
         iface="sl-ref-c")
    time.sleep(0.3)
    check("paws_discards_a_stale_byte", server.reads.get(sport) == b"abcdef",
          f"SYN-ACK timestamp {their}, read {server.reads.get(sport)!r}")


if __name__ == "__main__":
    sys.exit(main())
