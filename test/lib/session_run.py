"""Running a command (typically mpirun) in a session of its own, so that a
timeout can end it together with every rank it started.

Not timeout(1): it signals mpirun's whole process group as well, and Open
MPI's mpirun, signalled twice, exits at once without ending its ranks,
which run on, each in a process group of its own. Used by
test/e2e/run_ep_case.py and benchmarks/ep/bench_ep.py.
"""

import os
import signal
import subprocess


def session_processes(sid):
    """Pids of the live processes in session `sid` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_in_session(cmd, cwd=None, timeout=None, env=None, grace=10,
                   merge_stderr=False):
    """Runs `cmd` in a new session. Returns (returncode, stdout, stderr,
    killed, leftovers): a command still running `timeout` seconds later gets
    SIGTERM (mpirun then ends its ranks), and `grace` seconds later every
    process left in its session gets SIGKILL; the return code is then 124
    and `killed` says which signals were sent (else None). `leftovers` is
    the number of processes that outlived the command in its session, also
    killed: ranks that outlive their launcher would hold the cores (and the
    next measurement) hostage. With `merge_stderr`, stderr is in stdout and
    the third value is ''."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merge_stderr
                         else subprocess.PIPE,
                         stdin=subprocess.DEVNULL, universal_newlines=True,
                         env=env, start_new_session=True)
    killed = None
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        killed = "SIGTERM"
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            killed = "SIGTERM, then SIGKILL"
        kill_all([p.pid] + session_processes(p.pid))
        out, err = p.communicate()
        rc = 124
    leftovers = session_processes(p.pid)
    kill_all(leftovers)
    return rc, out, err or "", killed, len(leftovers)
