#!/usr/bin/env python3
"""Stand in for systemd's notify socket: run a command as a Type=notify service would be run, and
print every sd_notify message it sends.

    scripts/notify-listener.py [options] -- COMMAND [ARG...]

The listener binds a unix datagram socket, starts COMMAND with NOTIFY_SOCKET, WATCHDOG_USEC and
WATCHDOG_PID (the command's own pid, as systemd sets it) in its environment, and prints one line
per message: the time since the start, the sender's pid (flagged when it is not the main process:
with NotifyAccess=main systemd would drop such a message) and the message's assignments.

Options:
  --watchdog-usec N     WATCHDOG_USEC to pass (default 2000000; 0 leaves watchdog off)
  --expect MSG          a message that must arrive, e.g. READY=1 (repeatable)
  --term-after-ready S  send SIGTERM S seconds after READY=1 (tests STOPPING=1 and a clean exit)
  --timeout S           SIGTERM the command after S seconds, SIGKILL 10 s later (default 60)
  --check-watchdog      require WATCHDOG=1 at least every WATCHDOG_USEC after READY=1
  --expect-exit CODE    the command's required exit status (default: not checked)
  --notify-access all   accept messages from any process, like NotifyAccess=all (default main:
                        a message from another pid is a failure, as systemd would drop it)
  --quiet               print only the summary

Exit status: 0 when every expectation held (and the command's own status otherwise), 1 when one
failed, 2 on usage errors. Example (the self-test run by scripts/check-deploy.sh):

    scripts/notify-listener.py --notify-access all --expect READY=1 -- systemd-notify --ready

(systemd-notify, made for shell scripts, sends on behalf of its parent process, hence "all".)
A cdcd run, as the daemon's runtime test would do it:

    scripts/notify-listener.py --expect READY=1 --expect STOPPING=1 --check-watchdog \
        --term-after-ready 5 --expect-exit 0 -- target/debug/cdcd run --config test.toml
"""
import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(
        description="Run a command with a notify socket and print the sd_notify messages it sends.",
        usage="%(prog)s [options] -- COMMAND [ARG...]",
    )
    p.add_argument("--watchdog-usec", type=int, default=2_000_000)
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--term-after-ready", type=float)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--check-watchdog", action="store_true")
    p.add_argument("--expect-exit", type=int)
    p.add_argument("--notify-access", choices=["main", "all"], default="main")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("no command given (put it after --)")
    if args.check_watchdog and args.watchdog_usec <= 0:
        p.error("--check-watchdog needs --watchdog-usec > 0")
    return args


def main():
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="notify-listener.")
    path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    # Ask the kernel for the sender's credentials, as systemd does, to know who sent each message.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.setblocking(False)

    env = dict(os.environ, NOTIFY_SOCKET=path)
    env.pop("WATCHDOG_PID", None)
    env.pop("WATCHDOG_USEC", None)
    if args.watchdog_usec > 0:
        env["WATCHDOG_USEC"] = str(args.watchdog_usec)
    # WATCHDOG_PID must be the pid of the process that ends up running COMMAND: set it in a shell
    # that then execs COMMAND (same pid).
    wrapper = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
    if args.watchdog_usec <= 0:
        wrapper = ["/bin/sh", "-c", 'exec "$@"', "sh"]

    start = time.monotonic()
    try:
        proc = subprocess.Popen(wrapper + args.command, env=env)
    except OSError as e:
        print(f"notify-listener: cannot run {args.command[0]}: {e}", file=sys.stderr)
        return 2

    def log(text):
        if not args.quiet:
            print(f"[notify] +{time.monotonic() - start:8.3f}s {text}", flush=True)

    log(f"started pid {proc.pid}: {' '.join(args.command)} "
        f"(NOTIFY_SOCKET={path}, WATCHDOG_USEC={env.get('WATCHDOG_USEC', 'unset')})")

    received = []          # (t, pid, assignments dict, raw)
    foreign = 0
    ready_at = None
    term_sent_at = None
    kill_at = start + args.timeout
    killed = False
    watchdog_times = []

    def drain():
        nonlocal foreign, ready_at
        cmsg_space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, anc, _flags, _addr = sock.recvmsg(65536, cmsg_space)
            except BlockingIOError:
                return
            t = time.monotonic() - start
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("3i", payload[: struct.calcsize("3i")])
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            received.append((t, pid, fields, text))
            mark = ""
            if pid is not None and pid != proc.pid:
                mark = f" [not the main pid {proc.pid}]"
                if args.notify_access == "main":
                    foreign += 1
                    mark = f" [NOT the main pid {proc.pid}: NotifyAccess=main would drop it]"
            log(f"pid {pid}: {' '.join(l for l in text.split(chr(10)) if l)}{mark}")
            if fields.get("READY") == "1" and ready_at is None:
                ready_at = time.monotonic()
            if fields.get("WATCHDOG") == "1":
                watchdog_times.append(time.monotonic())

    rc = None
    while rc is None:
        drain()
        now = time.monotonic()
        if args.term_after_ready is not None and ready_at and term_sent_at is None \
                and now - ready_at >= args.term_after_ready:
            log(f"sending SIGTERM to {proc.pid}")
            proc.send_signal(signal.SIGTERM)
            term_sent_at = now
        if now >= kill_at and not killed:
            if term_sent_at is None:
                log(f"timeout after {args.timeout:.0f}s: sending SIGTERM")
                proc.send_signal(signal.SIGTERM)
                term_sent_at = now
                kill_at = now + 10
            else:
                log("still running 10 s after SIGTERM: sending SIGKILL")
                proc.kill()
                killed = True
        try:
            rc = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    time.sleep(0.05)
    drain()
    sock.close()
    os.unlink(path)
    os.rmdir(tmp)
    log(f"exited with status {rc}")

    failures = []
    seen = {f"{k}={v}" for _, _, fields, _ in received for k, v in fields.items()}
    for want in args.expect:
        if want not in seen:
            failures.append(f"expected message {want} never arrived")
    if foreign:
        failures.append(f"{foreign} message(s) came from a process other than the main one")
    if args.check_watchdog:
        limit = args.watchdog_usec / 1e6
        if ready_at is None:
            failures.append("--check-watchdog: READY=1 never arrived")
        else:
            end = term_sent_at or time.monotonic()
            points = [ready_at] + [w for w in watchdog_times if ready_at <= w <= end] + [end]
            worst = max(b - a for a, b in zip(points, points[1:]))
            if worst > limit:
                failures.append(f"--check-watchdog: {worst:.2f}s without WATCHDOG=1 "
                                f"(WATCHDOG_USEC is {limit:.2f}s)")
            else:
                log(f"watchdog: longest gap {worst:.2f}s <= {limit:.2f}s "
                    f"({len(points) - 2} pings)")
    if args.expect_exit is not None and rc != args.expect_exit:
        failures.append(f"exit status {rc}, expected {args.expect_exit}")

    print(f"[notify] summary: {len(received)} message(s); "
          + ("OK" if not failures else "FAILED: " + "; ".join(failures)), flush=True)
    if failures:
        return 1
    if args.expect_exit is not None:
        return 0
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
