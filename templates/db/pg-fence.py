#!/usr/bin/python3
# pg-fence for {{name}} ({{project}}, {{region}}). Rendered by provision; runs as root under the
# host's service manager, beside Patroni. A software watchdog (where no /dev/watchdog is):
#
# A primary must never acknowledge a write once it may have lost its leader lock. Patroni
# refreshes the lock (an etcd key with a lease of `ttl` s) every `loop_wait`; if Patroni hangs
# (SIGSTOP, a stalled HA loop, a slow disk) PostgreSQL goes on as a primary while the lease runs
# out and another member is promoted. This loop reads the lock from etcd (linearizable reads,
# so a member cut off in a minority answers nothing) and kills this host's PostgreSQL when it is
# a primary and the lease of the lock it last saw held by this member has less than MARGIN_S
# left: MARGIN_S before anyone else can take the lock (and after Patroni's own demotion on
# losing etcd, which comes retry_timeout after its last refresh).
#
# Patroni (when it runs again) restarts PostgreSQL: as the primary if it still holds the lock,
# else as a replica of the new leader. Nothing here ever promotes, demotes or rewinds.
import base64
import json
import os
import signal
import sys
import time
import urllib.request

ETCD = "{{etcd_urls}}".split(",")
KEY = "/{{project}}/{{scope}}/leader"
ME = "{{name}}"
DATA_DIR = "{{data_dir}}"
TTL_S = {{ttl_s}}
# Fence this long before the lease of this member's lock runs out. Patroni refreshes it every
# loop_wait, so it normally has about TTL_S left; MARGIN_S < TTL_S - retry_timeout - loop_wait.
MARGIN_S = {{margin_s}}
POLL_MS = 500
REQUEST_TIMEOUT_S = 1.0

assert 0 < MARGIN_S < TTL_S


def log(msg):
    print(time.strftime("%Y-%m-%d %H:%M:%S"), "pg-fence:", msg, flush=True)


def call(path, body):
    data = json.dumps(body).encode()
    for url in ETCD:
        try:
            req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
                return json.loads(r.read())
        except Exception:
            continue
    return None


def lock_left_s():
    """Seconds of lease left on the leader key if it names this member, else None."""
    r = call("/v3/kv/range", {"key": base64.b64encode(KEY.encode()).decode()})
    kvs = (r or {}).get("kvs") or []
    if not kvs or base64.b64decode(kvs[0].get("value", "")).decode() != ME:
        return None
    lease = kvs[0].get("lease")
    t = call("/v3/lease/timetolive", {"ID": lease}) if lease else None
    left = int((t or {}).get("TTL", -1))
    return left if left >= 0 else None


def postmaster_pid():
    """The postmaster's pid when this PostgreSQL runs as a primary, else None."""
    if os.path.exists(os.path.join(DATA_DIR, "standby.signal")):
        return None
    try:
        with open(os.path.join(DATA_DIR, "postmaster.pid")) as f:
            pid = int(f.readline().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def fence(pid, why):
    log(f"FENCING: killing the primary PostgreSQL (postmaster {pid}): {why}")
    children = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    for p in [pid] + children:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def main():
    log(f"watching {KEY} for {ME}: a primary is fenced {MARGIN_S} s before its lock's lease ends (ttl {TTL_S} s)")
    expires_at = None  # when the lease of this member's lock, last seen, runs out (monotonic)
    while True:
        pid = postmaster_pid()
        if pid is None:
            expires_at = None
        else:
            if expires_at is None:
                # Just became a primary (Patroni took the lock first): grant it one lease.
                log(f"primary running (postmaster {pid})")
                expires_at = time.monotonic() + TTL_S
            left = lock_left_s()
            if left is not None:
                expires_at = time.monotonic() + left
            if time.monotonic() > expires_at - MARGIN_S:
                fence(pid, f"the leader lock of {ME} is not confirmed and its lease ends in less than {MARGIN_S} s")
                expires_at = None
        time.sleep(POLL_MS / 1000)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
