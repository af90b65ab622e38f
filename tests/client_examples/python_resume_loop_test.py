#!/usr/bin/python3
"""The Python subscriber's pieces (client_examples/python/subscriber.py):
backoff, the state file, the output, and the resume loop against a real gRPC
server on a real port whose Subscribe answers are scripted per call, for
what the real chstreamd cannot be made to send on cue (fell_behind, server
checkpoints, each error code). The end-to-end test against chstreamd is
python_subscriber_test.
"""

import os
import queue
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", ".."), "chstream")
sys.path.insert(0, os.path.join(RUNFILES, "client_examples/python"))
import grpc  # noqa: E402
import subscriber  # noqa: E402
from chstream.v1 import chstream_pb2 as pb  # noqa: E402
from chstream.v1 import chstream_pb2_grpc  # noqa: E402

DEADLINE = 30.0
STORE = "0123456789abcdef0123456789abcdef"


def wait_until(done, what, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)  # the polling interval


def event(position):
    return pb.SubscribeResponse(event=pb.Event(
        position=position, stream="companies", timepoint=1000 + position,
        resource_uri=f"/company/{position:08d}",
        company_number=f"{position:08d}", type=pb.EVENT_TYPE_CHANGED))


# Script steps for one Subscribe call: a SubscribeResponse to send, an
# (grpc.StatusCode, details) pair to end the call with, or HANG: send nothing
# until the client cancels.
HANG = "hang"


class ScriptedServer(chstream_pb2_grpc.CompanyStreamServicer):
    """Answers each Subscribe call with the next script of `scripts`; a call
    with no script left hangs. Records every request."""

    def __init__(self, scripts):
        self.scripts = queue.Queue()
        for s in scripts:
            self.scripts.put(s)
        self.requests = []
        self.cancelled = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        chstream_pb2_grpc.add_CompanyStreamServicer_to_server(
            self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def stop(self):
        self._server.stop(grace=None)

    def Subscribe(self, request, context):
        self.requests.append(request)
        try:
            script = self.scripts.get_nowait()
        except queue.Empty:
            script = [HANG]
        first = True
        for step in script:
            if step == HANG:
                done = threading.Event()
                context.add_callback(done.set)
                done.wait(DEADLINE)
                self.cancelled.set()
                return
            if isinstance(step, tuple):
                context.abort(step[0], step[1])
            if first:
                step = pb.SubscribeResponse.FromString(step.SerializeToString())
                step.store_id = STORE
                first = False
            yield step


class RecordingProcessor(subscriber.Processor):
    def __init__(self):
        self.events = []
        self.checkpoints = []

    def process(self, event):
        self.events.append(event.position)

    def checkpoint(self, position, store_id):
        self.checkpoints.append((position, store_id))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def options(port, **kw):
    o = subscriber.LoopOptions(address=f"127.0.0.1:{port}",
                               heartbeat_seconds=1, initial_backoff=0.01,
                               max_backoff=0.05, watchdog_tick=0.01,
                               checkpoint_events=1000,
                               checkpoint_interval=3600)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


class ResumeLoopTest(unittest.TestCase):

    def run_loop(self, server, loop):
        """Runs `loop` in a thread; returns (thread, errors list)."""
        errors = []

        def run():
            try:
                loop.run()
            except BaseException as e:  # noqa: B902  reported by the test
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        self.addCleanup(server.stop)
        return t, errors

    def test_messages_move_and_save_the_cursor_and_resume_after_it(self):
        server = ScriptedServer([
            [pb.SubscribeResponse(caught_up=pb.CaughtUp(position=5)),
             pb.SubscribeResponse(heartbeat=pb.Heartbeat(last_position=9,
                                                         head_position=12)),
             event(10), event(10), event(11),
             pb.SubscribeResponse(fell_behind=pb.FellBehind(position=11,
                                                            head_position=40)),
             event(12),
             pb.SubscribeResponse(checkpoint=pb.Checkpoint(position=30,
                                                           head_position=40)),
             (grpc.StatusCode.UNAVAILABLE, "going away")],
            [event(31), HANG],
        ])
        processor = RecordingProcessor()
        loop = subscriber.ResumeLoop(options(server.port, start="now"),
                                     processor)
        t, errors = self.run_loop(server, loop)
        wait_until(lambda: processor.events[-1:] == [31], "event 31")
        loop.stop()
        t.join(DEADLINE)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        # The duplicate 10 is skipped; positions strictly increase.
        self.assertEqual(processor.events, [10, 11, 12, 31])
        self.assertEqual(loop.stats.duplicates, 1)
        self.assertEqual(loop.stats.fell_behind, 1)
        self.assertEqual(loop.stats.server_checkpoints, 1)
        self.assertEqual(loop.stats.heartbeats, 1)
        # caught_up, the heartbeat and the server checkpoint each saved the
        # cursor (past what the filter skipped); the stop saved event 31.
        self.assertEqual(processor.checkpoints,
                         [(5, STORE), (9, STORE), (30, STORE), (31, STORE)])
        first, second = server.requests[:2]
        self.assertTrue(first.start.now)
        self.assertEqual(first.expected_store_id, "")
        self.assertEqual(first.heartbeat_seconds, 1)
        # Resumed after the server checkpoint, under the store it learnt.
        self.assertEqual(second.start.after_position, 30)
        self.assertEqual(second.expected_store_id, STORE)

    def test_checkpoints_every_n_events(self):
        server = ScriptedServer([[event(p) for p in range(1, 8)] + [HANG]])
        processor = RecordingProcessor()
        loop = subscriber.ResumeLoop(
            options(server.port, start="beginning", checkpoint_events=3),
            processor)
        t, errors = self.run_loop(server, loop)
        wait_until(lambda: len(processor.events) == 7, "7 events")
        self.assertEqual([p for p, _ in processor.checkpoints], [3, 6])
        loop.stop()
        t.join(DEADLINE)
        self.assertEqual([p for p, _ in processor.checkpoints], [3, 6, 7])
        self.assertTrue(server.requests[0].start.beginning)

    def test_fatal_codes_stop_the_loop_other_errors_are_retried(self):
        for code in (grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.FAILED_PRECONDITION):
            with self.subTest(code=code):
                server = ScriptedServer([
                    [(grpc.StatusCode.OUT_OF_RANGE, "beyond the head")],
                    [(grpc.StatusCode.RESOURCE_EXHAUSTED, "full")],
                    [(code, "expected_store_id X is not Y")],
                ])
                processor = RecordingProcessor()
                loop = subscriber.ResumeLoop(
                    options(server.port, after_position=7,
                            expected_store_id=STORE), processor)
                t, errors = self.run_loop(server, loop)
                t.join(DEADLINE)
                self.assertFalse(t.is_alive())
                self.assertEqual(len(errors), 1)
                self.assertIsInstance(errors[0], subscriber.FatalError)
                self.assertEqual(errors[0].code, code)
                self.assertEqual(len(server.requests), 3)
                for r in server.requests:
                    self.assertEqual(r.start.after_position, 7)
                    self.assertEqual(r.expected_store_id, STORE)
                self.assertEqual(processor.checkpoints, [])  # nothing new

    def test_watchdog_cancels_a_silent_call_and_resumes(self):
        server = ScriptedServer([[event(1), HANG], [event(2), HANG]])
        clock = FakeClock()
        processor = RecordingProcessor()
        loop = subscriber.ResumeLoop(
            options(server.port, start="beginning", heartbeat_seconds=2,
                    stall_heartbeats=3), processor, clock=clock)
        t, errors = self.run_loop(server, loop)
        wait_until(lambda: processor.events == [1], "event 1")
        clock.now += 6  # 3 heartbeat periods of 2 s without a message
        wait_until(server.cancelled.is_set, "the silent call to be cancelled")
        wait_until(lambda: processor.events == [1, 2], "event 2")
        self.assertEqual(loop.stats.stalls, 1)
        self.assertEqual(server.requests[1].start.after_position, 1)
        loop.stop()
        t.join(DEADLINE)
        self.assertEqual(errors, [])

    def test_stop_during_backoff(self):
        server = ScriptedServer([[(grpc.StatusCode.UNAVAILABLE, "down")]])
        loop = subscriber.ResumeLoop(
            options(server.port, initial_backoff=3600, max_backoff=3600),
            RecordingProcessor(), uniform01=lambda: 1.0)
        t, errors = self.run_loop(server, loop)
        wait_until(lambda: loop.stats.failed_calls == 1, "the failed call")
        loop.stop()
        t.join(DEADLINE)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])


class BackoffTest(unittest.TestCase):

    def test_full_jitter_doubles_to_the_cap_and_resets(self):
        b = subscriber.Backoff(0.5, 30, uniform01=lambda: 1.0)
        self.assertEqual([b.next() for _ in range(9)],
                         [0.5, 1, 2, 4, 8, 16, 30, 30, 30])
        b.reset()
        self.assertEqual(b.next(), 0.5)
        self.assertEqual(
            subscriber.Backoff(0.5, 30, lambda: 0.25).next(), 0.125)
        self.assertEqual(subscriber.Backoff(0.5, 30, lambda: 7).next(), 0.5)
        self.assertEqual(subscriber.Backoff(0.5, 30, lambda: -1).next(), 0)
        many = subscriber.Backoff(0.5, 30, lambda: 1.0)
        many.attempts = 10_000
        self.assertEqual(many.next(), 30)


class StateFileTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.path = os.path.join(self.dir, "app.position")

    def write(self, data):
        with open(self.path, "wb") as f:
            f.write(data)

    def test_round_trip_and_atomic_rewrite(self):
        self.assertIsNone(subscriber.read_state(self.path))
        subscriber.write_state(self.path, subscriber.SavedState(42, STORE))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), f"42 {STORE}\n".encode())
        self.assertEqual(subscriber.read_state(self.path),
                         subscriber.SavedState(42, STORE))
        subscriber.write_state(self.path, subscriber.SavedState(43, STORE))
        self.assertEqual(subscriber.read_state(self.path).position, 43)
        self.assertEqual(os.listdir(self.dir), ["app.position"])

    def test_position_alone_is_read(self):
        self.write(b"17\n")
        self.assertEqual(subscriber.read_state(self.path),
                         subscriber.SavedState(17, ""))

    def test_anything_else_is_an_error(self):
        for bad in (b"", b"\n", b"abc\n", b"-1\n", b"12 34\n",
                    b"12 " + STORE.upper().encode() + b"\n", b"1 2 3\n",
                    b"\xff\n", "\u0661\n".encode()):
            with self.subTest(bad=bad):
                self.write(bad)
                with self.assertRaises(subscriber.StateFileError):
                    subscriber.read_state(self.path)

    def test_failed_write_leaves_no_temporary_file(self):
        os.mkdir(self.path)  # rename onto a directory fails
        with self.assertRaises(OSError):
            subscriber.write_state(self.path, subscriber.SavedState(1, STORE))
        self.assertEqual(os.listdir(self.dir), ["app.position"])


class EventLogTest(unittest.TestCase):

    def setUp(self):
        self.path = os.path.join(
            tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR")), "out.jsonl")

    def test_appends_lines_and_recovers_the_last_position(self):
        log = subscriber.EventLog(self.path)
        self.assertIsNone(log.last_position)
        log.append(event(1).event)
        log.append(event(2).event)
        with self.assertRaises(subscriber.StateFileError):
            log.append(event(2).event)  # never a position twice
        log.sync()
        log.close()
        reopened = subscriber.EventLog(self.path)
        self.assertEqual(reopened.last_position, 2)
        reopened.close()
        with open(self.path, encoding="utf-8") as f:
            first = f.readline()
        self.assertEqual(
            first,
            '{"position":1,"stream":"companies","timepoint":1001,'
            '"type":"changed","resource_uri":"/company/00000001",'
            '"company_number":"00000001",'
            '"published_at":"1970-01-01T00:00:00.000000Z"}\n')

    def test_cuts_off_a_torn_last_line(self):
        log = subscriber.EventLog(self.path)
        log.append(event(1).event)
        log.close()
        with open(self.path, "ab") as f:
            f.write(b'{"position":2,"str')
        reopened = subscriber.EventLog(self.path)
        self.assertEqual(reopened.last_position, 1)
        self.assertEqual(reopened.truncated_bytes, 18)
        reopened.close()

    def test_refuses_a_file_it_did_not_write(self):
        with open(self.path, "w") as f:
            f.write("hello\n")
        with self.assertRaises(subscriber.StateFileError):
            subscriber.EventLog(self.path)


if __name__ == "__main__":
    unittest.main(verbosity=2)
