#!/usr/bin/env python3
"""Where the time of each paced request goes, from a kernel trace of the whole machine.

Reads `perf script -F comm,pid,tid,cpu,time,event,trace` on stdin, of two recordings one after
the other: sched:sched_switch and sched:sched_wakeup on every core (`perf record -a`), and
syscalls:sys_{enter,exit}_{read,write,writev,recvfrom,sendto} of the two processes. CONNECTIONS is `ss -tnpH` taken while the paced client ran; CLIENT and SERVER are
the process ids of the paced client (wrk) and of the server it talks to.

Each request on a paced connection is cut in three at the four system calls that carry it:
  to read   the client writes the request .. the server has read it
  handle    the server has read it ........ the server starts writing the answer
  to client the server writes the answer .. the client has read it
and the time of each part is split by what the threads that carry it were doing: running,
waiting on a core (woken or preempted, not yet running again), or asleep. For the slowest
requests it also names what ran on the cores while they waited.

  bench/attribute.py CONNECTIONS CLIENT SERVER < perf-script.txt
"""

import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>-?\d+)/(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<time>\d+\.\d+):\s+(?P<event>[\w:]+):\s*(?P<trace>.*)$"
)
FIELD = re.compile(r"(\w+)=(\S+)")
READS = {"read", "recvfrom"}
WRITES = {"write", "writev", "sendto"}


def connections(path, client, server):
    """Pairs of (client fd, server fd), one per connection between the two processes."""
    ends = {}  # (local port, peer port) -> (pid, fd)
    for line in open(path):
        ports = re.findall(r"\S+:(\d+|\*)(?=\s)", line)
        owner = re.search(r"pid=(\d+),fd=(\d+)", line)
        if len(ports) >= 2 and owner:
            ends[ports[0], ports[1]] = (int(owner[1]), int(owner[2]))
    pairs = []
    for (local, peer), (pid, fd) in ends.items():
        other = ends.get((peer, local))
        if pid == client and other and other[0] == server:
            pairs.append((fd, other[1]))
    return pairs


class Threads:
    """Each thread's state over time: running, waiting on a core, or asleep."""

    def __init__(self):
        self.state = {}  # tid -> ("run" | "wait" | "sleep", since, holder)
        # tid -> [(start, end, state, holder)]; a wait's holder is what had the core it waited
        # for when the wait began (the thread that preempted it, or the one running where it
        # was woken).
        self.spans = defaultdict(list)
        self.on_cpu = {}  # cpu -> (tid, comm, since)
        self.cpu_spans = defaultdict(list)  # cpu -> [(start, end, comm)]

    def _enter(self, tid, state, t, holder=None):
        old = self.state.get(tid)
        if old and old[0] != state:
            self.spans[tid].append((old[1], t, old[0], old[2]))
        if not old or old[0] != state:
            self.state[tid] = (state, t, holder)

    def wakeup(self, tid, t, cpu):
        if self.state.get(tid, ("sleep",))[0] == "sleep":
            running = self.on_cpu.get(cpu)
            self._enter(tid, "wait", t, running[1] if running else "?")

    def switch(self, cpu, t, prev, prev_state, nxt, next_comm):
        # R or R+ means preempted: still runnable, so waiting for a core from now on.
        if prev_state.startswith("R"):
            self._enter(prev, "wait", t, next_comm)
        else:
            self._enter(prev, "sleep", t)
        self._enter(nxt, "run", t)
        old = self.on_cpu.get(cpu)
        if old:
            self.cpu_spans[cpu].append((old[2], t, old[1]))
        self.on_cpu[cpu] = (nxt, next_comm, t)

    def split(self, tids, start, end):
        """Time of the window spent by any of TIDS running and waiting (overlaps counted once
        per thread), and the spans each spent waiting."""
        out = {"run": 0.0, "wait": 0.0}
        waits = []
        for tid in tids:
            for a, b, state, _ in self.spans.get(tid, ()):
                lo, hi = max(a, start), min(b, end)
                if hi > lo and state in out:
                    out[state] += hi - lo
                    if state == "wait":
                        waits.append((lo, hi))
        return out, waits

    def long_waits(self, tids, longer_than):
        """The waits for a core longer than LONGER_THAN seconds of any of TIDS, as
        (seconds, holder)."""
        return [(b - a, holder) for tid in tids for a, b, state, holder in self.spans.get(tid, ())
                if state == "wait" and b - a > longer_than]

    def who_ran(self, start, end):
        """Seconds each command ran on each core within the window, summed over the cores
        (idle included, as swapper)."""
        ran = defaultdict(float)
        for spans in self.cpu_spans.values():
            for a, b, comm in spans:
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    ran[comm] += hi - lo
        return ran


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    client, server = int(sys.argv[2]), int(sys.argv[3])
    pairs = connections(sys.argv[1], client, server)
    if not pairs:
        sys.exit("no connection between the client and the server in " + sys.argv[1])
    by_client = {c: i for i, (c, _) in enumerate(pairs)}
    by_server = {s: i for i, (_, s) in enumerate(pairs)}

    threads = Threads()
    pending = {}  # tid -> fd of the system call it is in
    step = [None] * len(pairs)  # per connection: the request in flight
    done = []
    incomplete = 0  # requests with an event missing from the trace, left out

    # The two recordings come one after the other: merged here in time order.
    events = sorted((m for m in map(LINE.match, sys.stdin) if m), key=lambda m: float(m["time"]))
    for m in events:
        t = float(m.group("time"))
        pid, tid, event = int(m.group("pid")), int(m.group("tid")), m.group("event")
        trace = m.group("trace")
        if event == "sched:sched_switch":
            f = dict(FIELD.findall(trace.replace(" ==> ", " ")))
            threads.switch(int(m.group("cpu")), t, int(f["prev_pid"]), f["prev_state"],
                           int(f["next_pid"]), f["next_comm"])
            continue
        if event == "sched:sched_wakeup":
            f = dict(FIELD.findall(trace))
            threads.wakeup(int(f["pid"]), t, int(f["target_cpu"]))
            continue
        if pid not in (client, server):
            continue
        kind, _, call = event.partition("sys_")[2].partition("_")
        if kind == "enter":
            fd = re.match(r"fd: (0x[0-9a-f]+)", trace)
            pending[tid] = int(fd.group(1), 16) if fd else None
            if call in WRITES:
                if pid == client and pending[tid] in by_client:
                    # The client sends a connection's next request only once it has read the
                    # last answer: a request still open here lost an event.
                    i = by_client[pending[tid]]
                    incomplete += step[i] is not None
                    step[i] = {"send": t}
                elif pid == server and pending[tid] in by_server:
                    r = step[by_server[pending[tid]]]
                    if r and "recv" in r and "reply" not in r:
                        r["reply"] = t
            continue
        fd = pending.pop(tid, None)
        if call not in READS or int(trace, 16) >= 1 << 63 or int(trace, 16) == 0:
            continue  # not a read, or a read that returned nothing or an error
        if pid == server and fd in by_server:
            r = step[by_server[fd]]
            if r and "recv" not in r:
                r["recv"], r["reader"] = t, tid
        elif pid == client and fd in by_client:
            i = by_client[fd]
            r = step[i]
            if r and "reply" in r:
                r["done"], r["taker"] = t, tid
                done.append(r)
                step[i] = None

    report(threads, done, incomplete)


def ms(seconds):
    return f"{seconds * 1000:.3f}"


def report(threads, done, incomplete):
    if not done:
        sys.exit("no complete request in the trace")
    # Each part, with the thread whose state matters in it: the server thread that read the
    # request, and the client thread that read the answer.
    parts = [("to read", "send", "recv", "reader"), ("handle", "recv", "reply", "reader"),
             ("to client", "reply", "done", "taker")]
    readers = {r["reader"] for r in done}  # the server's threads that serve these requests
    total = sorted(done, key=lambda r: r["done"] - r["send"])
    n = len(total)
    slow = total[int(n * 0.99):]  # the slowest 1 %: what makes the p99
    print(f"{n} requests ({incomplete} more with an event missing from the trace, left out); "
          f"total p50 {ms(total[n // 2]['done'] - total[n // 2]['send'])} ms, "
          f"p99 {ms(slow[0]['done'] - slow[0]['send'])} ms")
    for name, a, b, _ in parts:
        d = sorted(r[b] - r[a] for r in done)
        print(f"  {name:9}: p50 {ms(d[n // 2])} ms, p99 {ms(d[int(n * 0.99)])} ms")
    k = len(slow)
    print(f"the slowest 1 % ({k} requests), mean per request:")
    for name, a, b, who in parts:
        run = wait = others = 0.0
        ran = defaultdict(float)
        for r in slow:
            split, waits = threads.split([r[who]], r[a], r[b])
            run += split["run"]
            wait += split["wait"]
            for lo, hi in waits:
                for comm, s in threads.who_ran(lo, hi).items():
                    ran[comm] += s
            if who == "reader":
                others += threads.split(readers - {r[who]}, r[a], r[b])[0]["wait"]
        top = sorted(ran.items(), key=lambda kv: -kv[1])[:5]
        span = sum(r[b] - r[a] for r in slow) / k
        line = (f"  {name:9}: {ms(span)} ms; that thread running {ms(run / k)}, waiting on a "
                f"core {ms(wait / k)}, asleep {ms(span - (run + wait) / k)}")
        if who == "reader":
            line += f"; the other serving threads waiting on a core {ms(others / k)}"
        print(line + "; meanwhile on the cores (summed over them, idle as swapper): "
              + ", ".join(f"{c} {ms(s / k)}" for c, s in top))
    # Over the whole trace: the serving threads' waits for a core longer than half a
    # millisecond, by what had the core when each began.
    waits = threads.long_waits(readers, 0.0005)
    by_holder = defaultdict(float)
    for seconds, holder in waits:
        by_holder[holder] += seconds
    top = sorted(by_holder.items(), key=lambda kv: -kv[1])[:6]
    print(f"the serving threads ({len(readers)}) waited for a core longer than 0.5 ms "
          f"{len(waits)} times, {ms(sum(s for s, _ in waits))} ms in all; by what had the core: "
          + ", ".join(f"{c} {ms(s)}" for c, s in top))


if __name__ == "__main__":
    main()
