#!/usr/bin/python3
"""The Python subscriber (client_examples/python/subscriber.py) against the
real chstreamd following its built-in simulator, both as child processes.

chstreamd is SIGKILLed and restarted on the same database (and port) while
events flow, SIGSTOPped until the subscriber's heartbeat watchdog gives up
on the silent stream, and killed together with the subscriber; the
subscriber is SIGKILLed and restarted on its own too. At the end its output
must hold every stored event exactly once, in order (positions 1..N dense,
each line the server's event at that position), and its state file must
hold the last position and the server's store_id. Then chstreamd restarts
with a new store_id and the subscriber must refuse to resume
(FAILED_PRECONDITION: exit 1, state and output untouched).

Every wait is on a condition with a deadline; chstreamd picks its ports
(port 0) the first time and logs them, as in the C++ tests.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", ".."), "chstream")
CHSTREAMD = os.path.join(RUNFILES, "server/chstreamd")
SUBSCRIBER = os.path.join(RUNFILES, "client_examples/python/subscriber.py")
PYTHON = "/usr/bin/python3"  # Debian's, with python3-grpcio

sys.path.insert(0, os.path.join(RUNFILES, "client_examples/python"))
import grpc  # noqa: E402
from chstream.v1 import chstream_pb2  # noqa: E402
from chstream.v1 import chstream_pb2_grpc  # noqa: E402

TMP = os.environ.get("TEST_TMPDIR", "/tmp")
DEADLINE = 60.0  # seconds; generous for a loaded 2-core machine


def wait_until(done, what, timeout=DEADLINE, on_timeout=lambda: ""):
    """Polls `done` until it holds; fails the test after `timeout`."""
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}\n"
                f"{on_timeout()}")
        time.sleep(0.01)  # the polling interval, not a wait for something


def tail(path, n=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except FileNotFoundError:
        return ""


class Child:
    """A child process with stdout and stderr appended to `log_path`."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        cwd = os.path.dirname(log_path)
        env = {"PATH": "/usr/bin:/bin", "TZ": "UTC"}  # no key: the simulator
        # Under --config=asan/tsan the sanitizer options and the abseil
        # annotations preload (tools/tsan/run_under.sh) must reach chstreamd
        # too: without them its tsan reported every absl::Mutex hand-off as
        # a race and slowed to a crawl (as tests/testing/child_process.cc).
        for name in ("TSAN_OPTIONS", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                     "LD_PRELOAD"):
            if name in os.environ:
                env[name] = os.environ[name]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         cwd=cwd)

    def output(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def log_lines(self):
        """The JSON log lines so far, parsed (other lines skipped)."""
        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def logged(self, msg):
        return [line for line in self.log_lines() if line.get("msg") == msg]

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=DEADLINE):
        """The exit code (128 + signal when killed by one)."""
        rc = self.proc.wait(timeout)
        return 128 - rc if rc < 0 else rc

    def signal_and_wait(self, sig, timeout=DEADLINE):
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()


class Server(Child):
    """chstreamd on <dir>/chstream.db, following the simulator."""

    def __init__(self, directory, run, port=0, extra=()):
        super().__init__(
            [CHSTREAMD, f"--db_path={directory}/chstream.db",
             f"--grpc_address=127.0.0.1:{port}",
             "--metrics_address=127.0.0.1:0", "--streams=all",
             "--simulator_rate=50", *extra],
            f"{directory}/chstreamd-{run}.log")
        wait_until(
            lambda: self.logged("chstreamd serving") or not self.running(),
            "chstreamd to serve", on_timeout=self.output)
        self.assert_running()
        serving = self.logged("chstreamd serving")[0]
        self.address = serving["grpc_address"]
        self.store_id = serving["store_id"]
        self.port = int(self.address.rsplit(":", 1)[1])

    def assert_running(self):
        if not self.running():
            raise AssertionError(f"chstreamd exited:\n{tail(self.log_path)}")


class PythonSubscriberTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.output = f"{self.dir}/events.jsonl"
        self.state = f"{self.dir}/chstream.position"
        self.children = []
        self.runs = 0

    def tearDown(self):
        for child in self.children:
            child.kill()

    def start_server(self, port=0, extra=()):
        self.runs += 1
        server = Server(self.dir, self.runs, port, extra)
        self.children.append(server)
        return server

    def start_subscriber(self, start="now", extra=()):
        self.runs += 1
        child = Child(
            [PYTHON, SUBSCRIBER, f"--address=127.0.0.1:{self.port}",
             f"--position_file={self.state}", f"--output={self.output}",
             f"--start={start}", "--heartbeat_seconds=1",
             "--checkpoint_events=25", "--checkpoint_interval_ms=200",
             "--log_level=debug", *extra],
            f"{self.dir}/subscriber-{self.runs}.log")
        self.children.append(child)
        return child

    def last_output_position(self):
        """The position of the output's last complete line, 0 if none."""
        try:
            with open(self.output, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return 0
        complete = [line for line in lines[:-1] if line]
        return json.loads(complete[-1])["position"] if complete else 0

    def wait_for_output(self, position, subscriber, server):
        wait_until(
            lambda: self.last_output_position() >= position,
            f"the subscriber's output to reach position {position}",
            on_timeout=lambda: (f"at {self.last_output_position()}\n"
                                f"subscriber:\n{tail(subscriber.log_path)}\n"
                                f"chstreamd:\n{tail(server.log_path)}"))
        self.assertTrue(subscriber.running(), tail(subscriber.log_path))

    def read_state(self):
        """The state file as (position, store_id); fails unless it is one
        line "<decimal position> <32 hex digits>\\n"."""
        with open(self.state, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n") and raw.count(b"\n") == 1, raw)
        position, store_id = raw.decode("ascii").split()
        self.assertTrue(position.isdigit(), raw)
        self.assertEqual(len(store_id), 32, raw)
        self.assertTrue(all(c in "0123456789abcdef" for c in store_id), raw)
        return int(position), store_id

    def test_every_event_once_in_order_across_kills_and_restarts(self):
        server = self.start_server()
        self.port = server.port
        store_id = server.store_id
        sub = self.start_subscriber(start="beginning")
        self.wait_for_output(100, sub, server)

        # 1. chstreamd SIGKILLed mid-stream, restarted on the same database
        # and port: the subscriber reconnects on its own and resumes.
        killed_at = self.last_output_position()
        self.assertEqual(server.signal_and_wait(signal.SIGKILL), 128 + 9)
        wait_until(lambda: sub.logged("subscribe call ended"),
                   "the subscriber to see the call end",
                   on_timeout=lambda: tail(sub.log_path))
        server = self.start_server(port=self.port)
        self.assertEqual(server.store_id, store_id)  # synchronous=full
        self.wait_for_output(killed_at + 200, sub, server)
        self.assertGreaterEqual(len(sub.logged("subscribing")), 2)
        self.assertIn("after_position", sub.logged("subscribing")[-1])
        # At 50 events a second it reaches the head, and says so.
        wait_until(lambda: sub.logged("caught up; live from here"),
                   "the subscriber to catch up",
                   on_timeout=lambda: tail(sub.log_path))

        # 2. The subscriber SIGKILLed mid-stream: its state file is whole and
        # never ahead of its output; restarted with --start=now, it resumes
        # from them, not from the head.
        self.assertEqual(sub.signal_and_wait(signal.SIGKILL), 128 + 9)
        position, saved_id = self.read_state()
        self.assertEqual(saved_id, store_id)
        self.assertLessEqual(position, self.last_output_position())
        before = self.last_output_position()
        sub = self.start_subscriber(start="now")
        self.wait_for_output(before + 200, sub, server)

        # 3. chstreamd stopped (SIGSTOP): no event, no heartbeat. The
        # watchdog cancels the silent call after 3 heartbeat periods, and
        # the subscriber carries on once chstreamd does.
        server.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: sub.logged(
                    "stream silent (no event, no heartbeat); reconnecting"),
                "the watchdog to give up on the silent stream",
                on_timeout=lambda: tail(sub.log_path))
        finally:
            server.proc.send_signal(signal.SIGCONT)
        self.wait_for_output(self.last_output_position() + 200, sub, server)

        # 4. Both SIGKILLed at once, then restarted.
        server.proc.send_signal(signal.SIGKILL)
        sub.proc.send_signal(signal.SIGKILL)
        self.assertEqual(server.wait(), 128 + 9)
        self.assertEqual(sub.wait(), 128 + 9)
        before = self.last_output_position()
        server = self.start_server(port=self.port)
        sub = self.start_subscriber(start="now")
        self.wait_for_output(before + 200, sub, server)

        # 5. SIGTERM: a clean stop saves the last position.
        self.assertEqual(sub.signal_and_wait(signal.SIGTERM), 0,
                         tail(sub.log_path))
        last = self.last_output_position()
        self.assertEqual(self.read_state(), (last, store_id))

        # Every stored event up to `last`, exactly once, in order.
        with open(self.output, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([line["position"] for line in lines],
                         list(range(1, last + 1)))
        with grpc.insecure_channel(server.address) as channel:
            stub = chstream_pb2_grpc.CompanyStreamStub(channel)
            events = list(stub.ReplayEvents(
                chstream_pb2.ReplayEventsRequest(
                    start=chstream_pb2.StartPoint(beginning=True), limit=last,
                    expected_store_id=store_id),
                timeout=DEADLINE))
        self.assertEqual(len(events), last)
        types = {chstream_pb2.EVENT_TYPE_CHANGED: "changed",
                 chstream_pb2.EVENT_TYPE_DELETED: "deleted"}
        for line, event in zip(lines, events):
            self.assertEqual(
                line,
                dict(line, position=event.position, stream=event.stream,
                     timepoint=event.timepoint, type=types[event.type],
                     resource_uri=event.resource_uri,
                     company_number=event.company_number))
        self.assertGreater(len({line["stream"] for line in lines}), 1)

        # 6. The store replaced (--new_store_id): resuming would mean other
        # events, so the subscriber stops with exit 1 and touches nothing.
        self.assertEqual(server.signal_and_wait(signal.SIGTERM), 0)
        server = self.start_server(port=self.port, extra=["--new_store_id"])
        self.assertNotEqual(server.store_id, store_id)
        with open(self.state, "rb") as f:
            state_before = f.read()
        output_size = os.path.getsize(self.output)
        sub = self.start_subscriber(start="now")
        self.assertEqual(sub.wait(), 1, tail(sub.log_path))
        failed = sub.logged("the saved position belongs to another store_id")
        self.assertEqual(len(failed), 1, tail(sub.log_path))
        self.assertEqual(failed[0]["code"], "FAILED_PRECONDITION")
        self.assertIn(store_id, failed[0]["error"])
        self.assertIn(server.store_id, failed[0]["error"])
        with open(self.state, "rb") as f:
            self.assertEqual(f.read(), state_before)
        self.assertEqual(os.path.getsize(self.output), output_size)

    def test_filtered_subscriber_saves_the_cursor_without_events(self):
        # A company that never appears: no event matches, yet caught_up and
        # heartbeats move the saved position along the log, so a restart
        # resumes there instead of scanning again or starting from "now".
        server = self.start_server()
        self.port = server.port
        sub = self.start_subscriber(start="now", extra=["--company=zz999999"])
        wait_until(lambda: os.path.exists(self.state),
                   "caught_up to be saved", on_timeout=lambda: tail(
                       sub.log_path))
        with grpc.insecure_channel(server.address) as channel:
            stub = chstream_pb2_grpc.CompanyStreamStub(channel)
            head = stub.GetStatus(chstream_pb2.GetStatusRequest(),
                                  timeout=DEADLINE).store.head_position
        first, store_id = self.read_state()
        self.assertEqual(store_id, server.store_id)
        wait_until(lambda: self.read_state()[0] > max(first, head),
                   "heartbeats to move the saved position past the head",
                   on_timeout=lambda: tail(sub.log_path))
        self.assertEqual(sub.signal_and_wait(signal.SIGKILL), 128 + 9)
        saved, _ = self.read_state()
        sub = self.start_subscriber(start="beginning",
                                    extra=["--company=ZZ999999"])
        wait_until(lambda: sub.logged("subscribing"), "a subscribe",
                   on_timeout=lambda: tail(sub.log_path))
        self.assertEqual(sub.logged("subscribing")[0].get("after_position"),
                         saved)
        self.assertEqual(sub.signal_and_wait(signal.SIGTERM), 0,
                         tail(sub.log_path))
        self.assertEqual(os.path.getsize(self.output), 0)
        self.assertEqual(self.read_state()[1], server.store_id)


if __name__ == "__main__":
    unittest.main(verbosity=2)
