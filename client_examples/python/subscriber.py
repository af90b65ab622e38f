#!/usr/bin/python3
"""subscriber.py: an example downstream service for chstream, in Python.

The same resume loop as the C++ example (client_examples/cpp/resume_loop.h),
in one file to copy into a Python service:

  1. Subscribe, resuming with `after_position` = the last position processed
     and `expected_store_id` = the store it belongs to (or from the beginning
     / from now the very first time).
  2. Hand each event to a processor in position order; skip any position at
     or below the cursor (defence in depth: the server sends none).
  3. Checkpoint (sync the output, then rewrite the state file atomically)
     every --checkpoint_events events or --checkpoint_interval_ms while
     events flow, on caught_up, on a heartbeat or a server checkpoint when
     something is unsaved, and on the way out. caught_up, heartbeats and
     checkpoints also move the cursor past events the filter skipped.
  4. A watchdog thread cancels the call when nothing at all, not even a
     heartbeat, arrived for 3 x --heartbeat_seconds (a dead stream).
     fell_behind is logged: the server replays from storage, nothing is lost.
  5. Any other error ends the call; reconnect after a jittered exponential
     backoff (uniform in [0, min(30 s, 0.5 s x 2^n)], reset after a call that
     delivered anything). INVALID_ARGUMENT is fatal (the request will never
     be accepted), and so is FAILED_PRECONDITION: the state file's store_id
     is not the server's (its store was replaced; positions may now mean
     other events), so the operator chooses where to start again.

"Processing" here is appending one JSON line per event to --output (the
C++ example's format); each line carries its position, so at start the
cursor is max(state file, last output line) and an event appended just
before a SIGKILL is not appended again: exactly once. Replace
OutputProcessor with your own (write the position in the same transaction as
your rows, and read it back at start).

Needs Debian's python3-grpcio and python3-protobuf, and the stubs generated
from proto/chstream/v1/chstream.proto (Bazel does it: see README.md).
Exit codes: 0 after SIGINT/SIGTERM, 1 on a fatal error, 2 on bad flags.
"""

import argparse
import dataclasses
import datetime
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Callable, Optional

# The generated stubs (chstream/v1/chstream_pb2*.py) are not in the source
# tree: Bazel writes them beside this file in the runfiles tree, or --stubs /
# $CHSTREAM_STUBS names a directory you generated them into by hand.
_WORKSPACE = "chstream"
_PACKAGE_DIR = "client_examples/python"


def _stub_directories():
    if os.environ.get("CHSTREAM_STUBS"):
        yield os.environ["CHSTREAM_STUBS"]
    yield os.path.dirname(os.path.abspath(__file__))
    for runfiles in (os.environ.get("RUNFILES_DIR"),
                     os.environ.get("TEST_SRCDIR"),
                     os.path.abspath(sys.argv[0]) + ".runfiles"):
        if runfiles:
            yield os.path.join(runfiles, _WORKSPACE, _PACKAGE_DIR)


for _dir in _stub_directories():
    if os.path.isfile(os.path.join(_dir, "chstream", "v1", "chstream_pb2.py")):
        sys.path.insert(0, _dir)
        break

try:
    import grpc  # noqa: E402  (Debian: python3-grpcio)
    from chstream.v1 import chstream_pb2  # noqa: E402
    from chstream.v1 import chstream_pb2_grpc  # noqa: E402
except ImportError as _e:
    sys.exit(f"subscriber.py: {_e}. Needs Debian's python3-grpcio and "
             "python3-protobuf (tools/setup) and the generated stubs: run it "
             "with `bazel run //client_examples:python_subscriber -- ...`, or "
             "set CHSTREAM_STUBS (see client_examples/python/README.md)")

# ---------------------------------------------------------------------------
# Logging: one JSON object per line on stderr, like chstreamd and the C++
# example.

_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}
_min_level = _LEVELS["info"]


def log(level: str, msg: str, **fields) -> None:
    if _LEVELS[level] < _min_level:
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    line = {"time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "level": level,
            "msg": msg}
    line.update(fields)
    sys.stderr.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# The state file: one line, "<position> <store_id>\n" (the C++ example's
# position file format; a file holding the position alone is still read).


class StateFileError(Exception):
    pass


@dataclasses.dataclass
class SavedState:
    position: int
    store_id: str = ""  # empty: unknown (an older file)


def read_state(path: str) -> Optional[SavedState]:
    """The saved state, or None when the file does not exist.

    Raises StateFileError when the file exists but does not hold a position
    (and maybe a 32-hex-digit store_id): an empty or hand-edited file is an
    error, not "no position".
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(129)
    except FileNotFoundError:
        return None
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = "?"
    position_text, _, store_id = text.partition(" ")
    if store_id and (len(store_id) != 32 or
                     any(c not in "0123456789abcdef" for c in store_id)):
        raise StateFileError(
            f"state file {path} does not hold a position and a store_id "
            "(32 hex digits); fix or remove it")
    if not position_text.isdigit() or not position_text.isascii():
        raise StateFileError(
            f"state file {path} does not hold a position (one decimal "
            "number); fix or remove it")
    return SavedState(int(position_text), store_id)


def write_state(path: str, state: SavedState) -> None:
    """Replaces the file's content atomically and durably.

    The line goes to <path>.tmp.<pid>, which is fsync'ed and renamed over the
    old file; then the directory is fsync'ed so that the rename itself
    survives a machine crash. After any crash the file holds the old or the
    new state, never a torn one.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    line = str(state.position)
    if state.store_id:
        line += " " + state.store_id
    data = (line + "\n").encode("ascii")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------
# The output: one JSON line per processed event, each carrying its position.

_LINE_PREFIX = b'{"position":'
_TYPE_NAMES = {
    chstream_pb2.EVENT_TYPE_CHANGED: "changed",
    chstream_pb2.EVENT_TYPE_DELETED: "deleted",
}


def format_line(event) -> str:
    """The output line for `event` (no newline), as the C++ example's."""
    at = event.published_at
    published = datetime.datetime.fromtimestamp(
        at.seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    published += ".%06dZ" % (at.nanos // 1000)
    return json.dumps(
        {
            "position": event.position,
            "stream": event.stream,
            "timepoint": event.timepoint,
            "type": _TYPE_NAMES.get(event.type, "unspecified"),
            "resource_uri": event.resource_uri,
            "company_number": event.company_number,
            "published_at": published,
        },
        separators=(",", ":"), ensure_ascii=False)


def parse_position(line: bytes) -> int:
    """The position of a line written by format_line(); ValueError if none."""
    if not line.startswith(_LINE_PREFIX):
        raise ValueError('line does not start with {"position":')
    rest = line[len(_LINE_PREFIX):]
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    if digits == 0 or rest[digits:digits + 1] != b",":
        raise ValueError("line has no valid position")
    return int(rest[:digits])


class EventLog:
    """An append-only output file of format_line() lines.

    Opening cuts off a torn last line (no newline: a machine crash) and reads
    the last position, so a subscriber killed between appending an event and
    saving its state resumes after that event. Each line is one write(2) on
    an O_APPEND descriptor: a killed process leaves whole lines.
    """

    def __init__(self, path: str):
        self.path = path
        self.last_position: Optional[int] = None
        self.truncated_bytes = 0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND |
                           os.O_CLOEXEC, 0o644)
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        if os.pread(self._fd, 1, size - 1) != b"\n":
            keep = self._start_of_line_ending_at(size)
            os.ftruncate(self._fd, keep)
            self.truncated_bytes = size - keep
            size = keep
            if size == 0:
                return
        start = self._start_of_line_ending_at(size - 1)
        line = os.pread(self._fd, size - 1 - start, start)
        try:
            self.last_position = parse_position(line)
        except ValueError as e:
            os.close(self._fd)
            raise StateFileError(
                f"the last line of {path} was not written by this subscriber "
                f"({e}); use another --output") from None

    def _start_of_line_ending_at(self, end: int) -> int:
        """The offset after the last newline strictly before `end`, or 0."""
        hi = end
        while hi > 0:
            lo = max(0, hi - 4096)
            nl = os.pread(self._fd, hi - lo, lo).rfind(b"\n")
            if nl >= 0:
                return lo + nl + 1
            hi = lo
        return 0

    def append(self, event) -> None:
        last = self.last_position
        if last is not None and event.position <= last:
            raise StateFileError(
                f"position {event.position} is not after {self.last_position}, "
                f"the last one in {self.path}")
        view = memoryview((format_line(event) + "\n").encode("utf-8"))
        while view:
            view = view[os.write(self._fd, view):]
        self.last_position = event.position

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


# ---------------------------------------------------------------------------
# The resume loop.


class Backoff:
    """Full jitter: the n-th delay since reset() is uniform in
    [0, min(max, initial * 2^n)]."""

    def __init__(self, initial: float, maximum: float,
                 uniform01: Callable[[], float] = random.random):
        self.initial, self.maximum = initial, maximum
        self._uniform01 = uniform01
        self.attempts = 0

    def next_cap(self) -> float:
        return min(self.maximum, self.initial * 2 ** min(self.attempts, 62))

    def next(self) -> float:
        cap = self.next_cap()
        self.attempts += 1
        return cap * min(1.0, max(0.0, self._uniform01()))

    def reset(self) -> None:
        self.attempts = 0


class Processor:
    """What the service does with events. Called from run()'s thread only."""

    def process(self, event) -> None:
        """Handles one event; positions strictly increase across calls.
        An exception stops the loop."""
        raise NotImplementedError

    def checkpoint(self, position: int, store_id: str) -> None:
        """Makes every processed event durable, then records `position` (and
        the store_id it belongs to) as the resume cursor."""
        raise NotImplementedError


class FatalError(Exception):
    """The loop cannot go on: retrying the same request will not help."""

    def __init__(self, code: Optional[grpc.StatusCode], message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class LoopOptions:
    address: str = "127.0.0.1:50051"
    streams: tuple = ()
    companies: tuple = ()
    start: str = "now"  # "beginning" or "now": only while no position is known
    after_position: Optional[int] = None  # the exclusive resume cursor
    expected_store_id: str = ""  # the store after_position belongs to
    heartbeat_seconds: int = 10
    stall_heartbeats: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    checkpoint_events: int = 100
    checkpoint_interval: float = 1.0
    watchdog_tick: float = 0.25


@dataclasses.dataclass
class LoopStats:
    calls: int = 0
    events: int = 0
    duplicates: int = 0
    caught_up: int = 0
    fell_behind: int = 0
    heartbeats: int = 0
    server_checkpoints: int = 0
    stalls: int = 0
    failed_calls: int = 0
    checkpoints: int = 0
    checkpointed: Optional[int] = None


def _channel(o: LoopOptions) -> grpc.Channel:
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    return grpc.insecure_channel(o.address, options=[
        # Keepalive: ping after 30 s without traffic, give up 10 s later
        # (chstreamd accepts pings every 10 s or more). A server-streaming
        # client sends no data after its request, so lift the default limit
        # of two pings without data, or keepalive would stop.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # The channel's own reconnect backoff no slower than the loop's, or
        # a server that came back would stay unreachable until its timer.
        ("grpc.initial_reconnect_backoff_ms", ms(o.initial_backoff)),
        ("grpc.min_reconnect_backoff_ms", ms(o.initial_backoff)),
        ("grpc.max_reconnect_backoff_ms", ms(o.max_backoff)),
    ])


def _ignore_state(_state) -> None:
    pass


class ResumeLoop:
    """Follows Subscribe until stop() or a fatal error; see the file comment.

    run() is called once, from one thread. stop() may be called from any
    other thread (not from a Python signal handler: that runs on the main
    thread, maybe inside a lock; main() takes signals on a sigwait thread).
    It only sets an Event; the watchdog thread cancels the call in flight.
    """

    def __init__(self, options: LoopOptions, processor: Processor,
                 clock: Callable[[], float] = time.monotonic,
                 uniform01: Callable[[], float] = random.random):
        self._o = options
        self._processor = processor
        self._clock = clock
        self._backoff = Backoff(options.initial_backoff, options.max_backoff,
                                uniform01)
        self._stall_timeout = (options.heartbeat_seconds *
                               options.stall_heartbeats)
        # run()'s thread only.
        self._last = options.after_position  # processed or skipped past
        self.store_id = options.expected_store_id  # what _last belongs to
        self._dirty = False
        self._pending_events = 0
        self._last_checkpoint_at = clock()
        self._checkpoint_failed = False
        # Shared with the watchdog.
        self._stopping = threading.Event()
        self._watchdog_exit = threading.Event()
        self._mu = threading.Lock()
        self._call = None
        self._last_activity = clock()
        self._stalled = False
        self.stats = LoopStats(checkpointed=self._last)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Returns after stop() (with a final checkpoint); raises FatalError,
        or what the processor raised."""
        watchdog = threading.Thread(target=self._watchdog, name="watchdog",
                                    daemon=True)
        watchdog.start()
        try:
            with _channel(self._o) as channel:
                # gRPC Python drives a channel's connection attempts only
                # while a thread polls it: between calls (the backoff wait,
                # calls failing fast while the server is down) nothing would,
                # and a server that came back would be noticed only by luck.
                # Watching the connectivity state keeps a thread polling.
                channel.subscribe(_ignore_state, try_to_connect=True)
                stub = chstream_pb2_grpc.CompanyStreamStub(channel)
                self._loop(stub)
        finally:
            # Save what was processed, also after a processor failure
            # (everything before the failing event is done); not after a
            # failed checkpoint.
            try:
                if self._dirty and not self._checkpoint_failed:
                    self._checkpoint()
            finally:
                self._watchdog_exit.set()
                watchdog.join()

    def _loop(self, stub) -> None:
        while not self._stopping.is_set():
            code, details, received_any, stalled = self._one_call(stub)
            if self._stopping.is_set():
                return
            self.stats.failed_calls += 1
            if received_any:
                self._backoff.reset()
            name = code.name if code is not None else "OK"
            if stalled:
                log("warning", "stream silent (no event, no heartbeat); "
                    "reconnecting", silent_for=self._stall_timeout)
            elif code == grpc.StatusCode.INVALID_ARGUMENT:
                log("error", "subscribe request rejected", code=name,
                    error=details)
                raise FatalError(code, details)
            elif code == grpc.StatusCode.FAILED_PRECONDITION:
                log("error", "the saved position belongs to another store_id",
                    code=name, error=details)
                raise FatalError(code, details)
            else:
                # UNAVAILABLE (server down or restarting), RESOURCE_EXHAUSTED,
                # CANCELLED, OUT_OF_RANGE (needs an operator: never skip to
                # the head silently), or a call the server ended.
                log("warning", "subscribe call ended", code=name, error=details)
            delay = self._backoff.next()
            log("info", "reconnecting", **{"in": round(delay, 3)},
                attempt=self._backoff.attempts)
            self._stopping.wait(delay)

    def _request(self):
        req = chstream_pb2.SubscribeRequest(
            filter=chstream_pb2.EventFilter(
                streams=list(self._o.streams),
                company_numbers=list(self._o.companies)),
            heartbeat_seconds=self._o.heartbeat_seconds)
        if self._last is not None:
            # A position means something only under its store_id.
            req.expected_store_id = self.store_id
            req.start.after_position = self._last
        elif self._o.start == "beginning":
            req.start.beginning = True
        else:
            req.start.now = True
        return req

    def _one_call(self, stub):
        """Runs one Subscribe call to its end: (code, details, received_any,
        stalled). Exceptions from the processor or a checkpoint propagate."""
        if self._last is not None:
            log("info", "subscribing", after_position=self._last)
        else:
            log("info", "subscribing", start=self._o.start)
        call = stub.Subscribe(self._request())
        with self._mu:
            self._call = call
            self._last_activity = self._clock()
            self._stalled = False
        self.stats.calls += 1
        received_any = False
        code, details = None, ""
        try:
            for msg in call:
                now = self._clock()
                with self._mu:
                    self._last_activity = now
                received_any = True
                self._handle(msg)
                since = now - self._last_checkpoint_at
                if self._dirty and since >= self._o.checkpoint_interval:
                    self._checkpoint()
            code, details = call.code(), call.details() or "stream ended"
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        except BaseException:
            call.cancel()
            raise
        finally:
            with self._mu:
                self._call = None
                stalled = self._stalled
        return code, details, received_any, stalled

    def _handle(self, msg) -> None:
        if msg.store_id and msg.store_id != self.store_id:
            self.store_id = msg.store_id  # what the positions that follow mean
        kind = msg.WhichOneof("message")
        if kind == "event":
            self._handle_event(msg.event)
        elif kind == "caught_up":
            log("info", "caught up; live from here",
                position=msg.caught_up.position)
            self._advance_to(msg.caught_up.position)
            # Always saved: a start=now subscriber has no other record of
            # where it started.
            self._checkpoint()
            self.stats.caught_up += 1
        elif kind == "fell_behind":
            log("warning", "fell behind the live stream; the server replays "
                "from storage", position=msg.fell_behind.position,
                head_position=msg.fell_behind.head_position)
            self.stats.fell_behind += 1
        elif kind == "heartbeat":
            self.stats.heartbeats += 1
            self._advance_to(msg.heartbeat.last_position)
            self._checkpoint()  # idle: a good moment to save
        elif kind == "checkpoint":
            # Catching up with a filter: everything matching up to here was
            # sent. Saving it lets a reconnect skip what the server scanned.
            self.stats.server_checkpoints += 1
            self._advance_to(msg.checkpoint.position)
            self._checkpoint()
        # None: a newer server's message kind; ignored.

    def _handle_event(self, event) -> None:
        if self._last is not None and event.position <= self._last:
            self.stats.duplicates += 1
            return
        try:
            self._processor.process(event)
        except Exception as e:
            log("error", "cannot process event", position=event.position,
                error=str(e))
            raise
        self._last = event.position
        self._dirty = True
        self._pending_events += 1
        self.stats.events += 1
        if self._pending_events >= self._o.checkpoint_events:
            self._checkpoint()

    def _advance_to(self, position: int) -> None:
        if self._last is None or position > self._last:
            self._last = position
            self._dirty = True

    def _checkpoint(self) -> None:
        if not self._dirty or self._last is None:
            return
        try:
            self._processor.checkpoint(self._last, self.store_id)
        except Exception as e:
            log("error", "cannot save the position", position=self._last,
                error=str(e))
            self._checkpoint_failed = True
            raise
        self._dirty = False
        self._pending_events = 0
        self._last_checkpoint_at = self._clock()
        self.stats.checkpoints += 1
        self.stats.checkpointed = self._last

    def _watchdog(self) -> None:
        while not self._watchdog_exit.is_set():
            with self._mu:
                call = self._call
                if call is not None and self._stopping.is_set():
                    call.cancel()
                elif (call is not None and not self._stalled and
                      self._clock() - self._last_activity >=
                      self._stall_timeout):
                    self._stalled = True
                    self.stats.stalls += 1
                    call.cancel()
            # Woken at once by stop(); after it, ticks until run() ends.
            if self._stopping.is_set():
                self._watchdog_exit.wait(self._o.watchdog_tick)
            else:
                self._stopping.wait(self._o.watchdog_tick)


# ---------------------------------------------------------------------------
# The example service.


class OutputProcessor(Processor):
    """Appends events to the output (a file or stdout); a checkpoint syncs
    the output, then saves the state, so the state is never ahead of it."""

    def __init__(self, output: Optional[EventLog], state_file: str):
        self._output = output
        self._state_file = state_file

    def process(self, event) -> None:
        if self._output is not None:
            self._output.append(event)
        else:
            sys.stdout.write(format_line(event) + "\n")
            sys.stdout.flush()

    def checkpoint(self, position: int, store_id: str) -> None:
        if self._output is not None:
            self._output.sync()
        write_state(self._state_file, SavedState(position, store_id))


def _list(value: str) -> tuple:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _int_in(lo: int, hi: int):
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {lo} to {hi}")
        return v
    return parse


def parse_flags(argv):
    p = argparse.ArgumentParser(
        prog="subscriber.py", allow_abbrev=False,
        description="Follows chstream's Subscribe stream with a resume loop: "
        "processes each event once, saves its position atomically, reconnects "
        "with jittered backoff and resumes after the last saved position. "
        "SIGINT/SIGTERM: save and exit 0.")
    p.add_argument("--address", default="127.0.0.1:50051",
                   help="chstream gRPC address (default %(default)s)")
    p.add_argument("--position_file", default="chstream.position",
                   help="the state file: the resume position and its store_id, "
                   "rewritten atomically (default %(default)s)")
    p.add_argument("--start", choices=("beginning", "now"), default="now",
                   help="where to start while the state file does not exist "
                   "(default %(default)s)")
    p.add_argument("--streams", type=_list, default=(),
                   help="only these streams, comma list (default all)")
    p.add_argument("--company",
                   type=lambda v: tuple(c.upper() for c in _list(v)),
                   default=(), help="only these company numbers, comma list")
    p.add_argument("--heartbeat_seconds", type=_int_in(1, 3600), default=10,
                   help="asked of the server; silence for 3 x this forces a "
                   "reconnect (default %(default)s)")
    p.add_argument("--output", default="",
                   help="append one JSON line per event here; its last line "
                   "also moves the cursor (default: stdout, at-least-once)")
    p.add_argument("--checkpoint_events", type=_int_in(1, 1_000_000),
                   default=100,
                   help="save the state every N events (default %(default)s)")
    p.add_argument("--checkpoint_interval_ms", type=_int_in(1, 3_600_000),
                   default=1000, help="... or every N ms while events flow "
                   "(default %(default)s)")
    p.add_argument("--log_level", choices=tuple(_LEVELS), default="info")
    return p.parse_args(argv)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def main(argv) -> int:
    global _min_level
    # SIGINT/SIGTERM are taken synchronously by one thread (sigwait), as in
    # the C++ example: a Python-level handler would run between two
    # bytecodes of the main thread, maybe while it holds a lock that stop()
    # needs. Blocked here, before any other thread starts, so that every
    # thread (gRPC's included) inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    # `bazel run` starts programs in their runfiles tree: make relative
    # --output and --position_file paths relative to where it was typed.
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
    flags = parse_flags(argv)
    _min_level = _LEVELS[flags.log_level]

    # Where to resume: the later of the state file and the output's last
    # line (see the file comment).
    try:
        output = EventLog(flags.output) if flags.output else None
        saved = read_state(flags.position_file)
    except (OSError, StateFileError) as e:
        log("error", "cannot open the output or read the state file",
            error=str(e))
        return 1
    if output is not None and output.truncated_bytes:
        log("warning", "cut off a torn last line of the output",
            bytes=output.truncated_bytes)
    after = saved.position if saved else None
    if output is not None and output.last_position is not None and (
            after is None or output.last_position > after):
        log("info", "the output is ahead of the state file; resuming after it",
            saved_position=after or 0, output_position=output.last_position)
        after = output.last_position

    options = LoopOptions(
        address=flags.address, streams=flags.streams, companies=flags.company,
        start=flags.start, after_position=after,
        expected_store_id=saved.store_id if saved else "",
        heartbeat_seconds=flags.heartbeat_seconds,
        checkpoint_events=flags.checkpoint_events,
        checkpoint_interval=flags.checkpoint_interval_ms / 1000)
    log("info", "subscriber starting", address=flags.address,
        state_file=flags.position_file, output=flags.output or "-",
        streams=",".join(flags.streams), company=",".join(flags.company))
    loop = ResumeLoop(options, OutputProcessor(output, flags.position_file))

    def wait_for_signal():
        log("info", "signal received; stopping",
            signal=signal.sigwait(_STOP_SIGNALS))
        loop.stop()

    threading.Thread(target=wait_for_signal, name="signals",
                     daemon=True).start()
    try:
        loop.run()
    except FatalError as e:
        log("error", "subscriber failed", error=str(e))
        if e.code == grpc.StatusCode.FAILED_PRECONDITION:
            log("error", "the server's store was replaced since the state "
                "file was written: positions may now mean other events. "
                "Choose where to start again: remove the state file (and the "
                "output) and run with --start=beginning (or --start=now)",
                state_file=flags.position_file)
        return 1
    except (OSError, StateFileError) as e:
        log("error", "subscriber failed", error=str(e))
        return 1
    finally:
        if output is not None:
            output.close()
    log("info", "subscriber stopped", position=loop.stats.checkpointed or 0,
        events=loop.stats.events, calls=loop.stats.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
