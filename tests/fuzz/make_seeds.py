#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/*).

Run from the repository root after changing a seed here:
    python3 tests/fuzz/make_seeds.py
The seeds are checked in; this script only documents how they were made.
Request seeds are encoded with /usr/bin/protoc from the text below.
"""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"
SAMPLE = (pathlib.Path(__file__).resolve().parents[1] / "ingest" / "testdata" /
          "upstream-events.ndjson").read_bytes()
LINES = SAMPLE.splitlines(keepends=True)

DELETED = (b'{"resource_kind":"company-profile","resource_uri":"/company/ab123456",'
           b'"resource_id":"AB123456","event":{"timepoint":"42","published_at":'
           b'"2024-02-29T23:59:59.123456789+01:00","type":"deleted"},"data":null}\n')
TIMEPOINT_STRING = (b'{"resource_kind":"company-officers","resource_uri":'
                    b'"/company/07217743/appointments/x","resource_id":"x","data":'
                    b'{"company_number":" sc000001 ","name":"\xc3\xa9\xe2\x82\xac"},'
                    b'"event":{"timepoint":"9223372036854775807","published_at":'
                    b'"2022-08-02t10:00:00z","type":"changed","fields_changed":["name"]}}\r\n')
BAD = b'{"resource_kind":"x","event":{"timepoint":-1}}\n{not json\n   \t\r\n\n'


def write(corpus, name, data):
    d = ROOT / corpus
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def chunked(body_lines):
    out = b""
    for line in body_lines:
        out += b"%x\r\n" % len(line) + line + b"\r\n"
    return out + b"0\r\n\r\n"


def main():
    # line_parser: byte 0 = line cap (255 = 8 MiB), byte 1 = split seed.
    write("line_parser", "sample", b"\xff\x07" + SAMPLE)
    write("line_parser", "sample_small_cap", b"\x10\x03" + SAMPLE)
    write("line_parser", "deleted_and_quirks", b"\xff\x01" + DELETED + TIMEPOINT_STRING)
    write("line_parser", "heartbeats_and_bad", b"\x02\x05\n\n" + BAD + b"partial")

    # http_response: raw response bytes.
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    write("http_response", "chunked_events", ok + chunked(LINES[:3] + [b"\n", DELETED]))
    write("http_response", "chunk_extension_and_trailer",
          ok + b"5;ext=1\r\n\n\n\n\n\n\r\n" + b"%x\r\n" % len(DELETED) + DELETED +
          b"\r\n0\r\nX-Trailer: y\r\n\r\n")
    write("http_response", "truncated_chunk", ok + b"400\r\n" + LINES[0][:300])
    write("http_response", "content_length",
          b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(TIMEPOINT_STRING) +
          TIMEPOINT_STRING)
    write("http_response", "close_delimited", b"HTTP/1.0 200 OK\r\n\r\n" + LINES[1] + BAD)
    write("http_response", "rate_limited",
          b"HTTP/1.1 429 Too Many Requests\r\nRetry-After:  120 \r\nContent-Length: 26\r\n\r\n"
          b"rate limit exceeded \xe2\x82\xac\xe2\x82")
    write("http_response", "timepoint_expired",
          b"HTTP/1.1 416 Requested Range Not Satisfiable\r\nTransfer-Encoding: chunked\r\n\r\n"
          + chunked([b"timepoint too old\n"]))
    write("http_response", "unauthorized", b"HTTP/1.1 401 Unauthorized\r\n\r\nInvalid key")

    # env_config: .env text, then "%%" lines, then args, then environment.
    example = (ROOT.parents[2] / "deploy" / "chstream.env.example").read_bytes()
    write("env_config", "deploy_example", example)
    write("env_config", "quoting",
          b"# comment\nexport CHSTREAM_LOG_LEVEL='debug'\nCHSTREAM_STALL_AFTER=\"15m\" # x\n"
          b"CH_STREAMING_API_KEY=\"a\\\"b\\\\c\\n\"\nCHSTREAM_STREAMS = companies,filings #c\n")
    write("env_config", "flags_env",
          b"CHSTREAM_MAX_SUBSCRIBERS=5\n%%\n--grpc_address=0.0.0.0:0\n--simulate\n"
          b"--simulator_rate=2000\n--start_timepoints=companies:5\n%%\n"
          b"CHSTREAM_ALLOW_INSECURE_REMOTE=\nCHSTREAM_SYNC_FUL=true\nCH_STREAMING_API_KEY=k1,k2\n")
    write("env_config", "bad_values",
          b"CHSTREAM_IDLE_TIMEOUT=-5s\nCHSTREAM_MAX_LINE_BYTES=99999999999999999999\n%%\n"
          b"--heartbeat_stale_after=1x\n--on_timepoint_expired=stop\n--help\n")

    # request_filter: serialized SubscribeRequest / ReplayEventsRequest.
    requests = {
        "all": ("SubscribeRequest", ""),
        "after_position": ("SubscribeRequest",
                           "start { after_position: 7 } filter { streams: 'companies' "
                           "types: EVENT_TYPE_DELETED } heartbeat_seconds: 5"),
        "companies_filter": ("SubscribeRequest",
                             "start { now: true } filter { company_numbers: ' sc571653 ' "
                             "company_numbers: '02154654' resource_kinds: 'company-profile' "
                             "resource_kinds: 'filing-history' }"),
        "published_since": ("ReplayEventsRequest",
                            "start { published_since { seconds: 1650000600 nanos: 5 } } "
                            "filter { streams: 'filings' streams: 'officers' } limit: 3"),
        "stream_timepoint": ("ReplayEventsRequest",
                             "start { stream_timepoint { stream: 'officers' timepoint: 1010 } }"
                             " filter { types: EVENT_TYPE_CHANGED }"),
        "bad_filter": ("ReplayEventsRequest",
                       "start { beginning: true } filter { streams: 'nope' company_numbers: 'x' "
                       "types: 9 }"),
    }
    proto = "proto/chstream/v1/chstream.proto"
    for name, (message, text) in requests.items():
        data = subprocess.run(
            ["protoc", "-Iproto", "--encode=chstream.v1." + message, proto],
            input=text.encode(), capture_output=True, check=True,
            cwd=ROOT.parents[2]).stdout
        write("request_filter", name, data)


if __name__ == "__main__":
    main()
