// File: server/alert_webhook.h
//
// POSTs alert payloads (JSON) to an operator's webhook URL (http:// or
// https://) without ever blocking the caller: Enqueue() puts the payload on
// a bounded queue (when full, the oldest payload is dropped and counted) and
// returns; one delivery thread with its own asio io_context sends them in
// order with Boost.Beast. Each attempt (resolve, connect, TLS handshake,
// request, response) must finish within `timeout`; a non-2xx answer or any
// error is retried with exponential backoff (initial_backoff, doubling) up
// to `max_attempts` in all, after which the payload is dropped and counted
// as a failure. Payloads go through log::Redact before they are sent, so a
// registered secret (the stream key) never leaves the process.
//
// TLS verifies the peer against the system CA store (plus ca_file) and the
// URL's host name.
//
// Thread-safety: every method is thread-safe. Stop() cancels the request in
// flight and any backoff wait, drops what is queued, and joins the thread.
//
//   CHS_ASSIGN_OR_RETURN(std::unique_ptr<AlertWebhook> webhook,
//                        AlertWebhook::Start({.url = config.alert_webhook_url}));
//   webhook->Enqueue(R"({"stream":"companies","state":"failed"})");
//   webhook->Stop();
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace chstream::server {

class AlertWebhook {
 public:
  struct Options {
    std::string url;  // http://host[:port]/path or https://...
    absl::Duration timeout = absl::Seconds(5);  // per attempt
    int max_attempts = 3;
    absl::Duration initial_backoff = absl::Seconds(1);
    size_t queue_capacity = 100;
    std::string ca_file;  // extra PEM bundle for https, may be empty
  };

  struct Stats {
    uint64_t enqueued = 0;
    uint64_t delivered = 0;        // answered 2xx
    uint64_t failed_attempts = 0;  // attempts that did not get a 2xx
    uint64_t failures = 0;         // payloads given up after max_attempts
    uint64_t dropped = 0;          // dropped from a full queue or at Stop
  };

  // Validates the options and starts the delivery thread.
  static absl::StatusOr<std::unique_ptr<AlertWebhook>> Start(Options options);
  ~AlertWebhook();  // Stop()s.
  AlertWebhook(const AlertWebhook&) = delete;
  AlertWebhook& operator=(const AlertWebhook&) = delete;

  // Queues `json` for delivery; never blocks on the network.
  void Enqueue(std::string json);

  Stats GetStats() const;
  // Blocks until `delivered + failures + dropped` reaches `n` or `timeout`
  // passes; returns whether it did. For tests.
  bool WaitForSettled(uint64_t n, absl::Duration timeout) const;

  // Idempotent.
  void Stop();

  struct Impl;  // in alert_webhook.cc

 private:
  explicit AlertWebhook(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chstream::server
