#include "bench/bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/wire_format_lite.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace chstream::bench {
namespace {

bool IsExecutable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string CompanyNumber(int64_t i, int64_t companies) {
  const uint64_t k =
      (static_cast<uint64_t>(i % companies) * 2654435761u) % 100'000'000u;
  return absl::StrFormat("%08d", k);
}

std::string CompanyDataJson(const std::string& number, int64_t i) {
  std::string json = absl::StrCat(
      R"({"accounts":{"accounting_reference_date":{"day":"31","month":"07"},)",
      R"("last_accounts":{"made_up_to":"2021-07-31","period_end_on":)",
      R"("2021-07-31","period_start_on":"2020-08-01","type":)",
      R"("total-exemption-full"},"next_accounts":{"due_on":"2023-04-30",)",
      R"("period_end_on":"2022-07-31","period_start_on":"2021-08-01"},)",
      R"("next_due":"2023-04-30","next_made_up_to":"2022-07-31"},)",
      R"("can_file":true,"company_name":"BENCH COMPANY )", i,
      R"( LIMITED","company_number":")", number,
      R"(","company_status":"active","confirmation_statement":)",
      R"({"last_made_up_to":"2022-07-19","next_due":"2023-08-02",)",
      R"("next_made_up_to":"2023-07-19"},"date_of_creation":"2017-07-20",)",
      R"("etag":"e861f92b4d7814ad3bbae90536c5ff4c1ac238bb",)",
      R"("jurisdiction":"england-wales","links":{"filing_history":)",
      R"("/company/)", number, R"(/filing-history","officers":"/company/)",
      number, R"(/officers","persons_with_significant_control":)",
      R"("/company/)", number,
      R"(/persons-with-significant-control","self":"/company/)", number,
      R"("},"registered_office_address":{"address_line_1":)",
      R"("Suite 4f, Ingram House","address_line_2":"227 Ingram Street",)",
      R"("country":"England","locality":"London","postal_code":"EC1A 1BB"},)",
      R"("sic_codes":["56290","47110"],"type":"ltd",)",
      R"("has_charges":false,"has_insolvency_history":false})");
  return json;
}

storage::Event CompanyProfileEvent(int64_t i, int64_t companies,
                                   absl::Time now) {
  const std::string number = CompanyNumber(i, companies);
  storage::Event e;
  e.stream = "companies";
  e.timepoint = 47'000'000 + i;
  e.type = storage::EventType::kChanged;
  e.resource_kind = "company-profile";
  e.resource_id = number;
  e.resource_uri = "/company/" + number;
  e.company_number = number;
  e.published_at = now;
  e.received_at = now;
  e.data_json = CompanyDataJson(number, i);
  // Stand-in for the Struct encoding: opaque bytes ~1.3 KB, derived from the
  // JSON (the Struct wire form is a little larger than the JSON text).
  e.data_pb = absl::StrCat(std::string("\x0a\x8f\x0a", 3), e.data_json,
                           std::string(100, '\x12'));
  storage::CompanyFields f;
  f.company_name = absl::StrCat("BENCH COMPANY ", i, " LIMITED");
  f.company_status = "active";
  f.company_type = "ltd";
  f.jurisdiction = "england-wales";
  f.date_of_creation = "2017-07-20";
  f.registered_office_address.address_line_1 = "Suite 4f, Ingram House";
  f.registered_office_address.address_line_2 = "227 Ingram Street";
  f.registered_office_address.locality = "London";
  f.registered_office_address.postal_code = "EC1A 1BB";
  f.registered_office_address.country = "England";
  f.sic_codes = {"56290", "47110"};
  e.company = std::move(f);
  return e;
}

RawSubscriber::RawSubscriber(grpc::GenericStub* stub, absl::Time measure_from,
                             absl::Time measure_until)
    : BenchSubscriber(measure_from, measure_until) {
  v1::SubscribeRequest request;
  request.mutable_start()->set_now(true);
  const std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  request_ = grpc::ByteBuffer(&slice, 1);
  stub->PrepareBidiStreamingCall(&ctx_, "/chstream.v1.CompanyStream/Subscribe",
                                 grpc::StubOptions(), this);
  StartWriteLast(&request_, grpc::WriteOptions());
  StartRead(&response_);
  StartCall();
}

void RawSubscriber::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  std::vector<grpc::Slice> slices;
  if (response_.Dump(&slices).ok()) {
    bytes_.clear();
    for (const grpc::Slice& s : slices) {
      bytes_.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    Decode(bytes_);
  }
  StartRead(&response_);
}

void RawSubscriber::Decode(const std::string& bytes) {
  Input in(reinterpret_cast<const uint8_t*>(bytes.data()),
           static_cast<int>(bytes.size()));
  const uint32_t tag = in.ReadTag();
  switch (tag >> 3) {
    case 1:  // event
      DecodeEvent(&in);
      break;
    case 2:  // caught_up
      RecordCaughtUp();
      break;
    case 3:  // fell_behind
      RecordFellBehind();
      break;
    default:  // heartbeat
      break;
  }
}

void RawSubscriber::DecodeEvent(Input* in) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return;
  const Input::Limit limit = in->PushLimit(static_cast<int>(length));
  uint64_t position = 0;
  int64_t seconds = 0;
  int32_t nanos = 0;
  while (const uint32_t tag = in->ReadTag()) {
    const uint32_t field = tag >> 3;
    if (field == 1) {
      in->ReadVarint64(&position);
    } else if (field == 10) {  // received_at: Timestamp
      uint32_t ts_length = 0;
      in->ReadVarint32(&ts_length);
      const Input::Limit ts = in->PushLimit(static_cast<int>(ts_length));
      while (const uint32_t ts_tag = in->ReadTag()) {
        uint64_t v = 0;
        in->ReadVarint64(&v);
        if ((ts_tag >> 3) == 1) seconds = static_cast<int64_t>(v);
        if ((ts_tag >> 3) == 2) nanos = static_cast<int32_t>(v);
      }
      in->PopLimit(ts);
    } else if (!google::protobuf::internal::WireFormatLite::SkipField(in,
                                                                      tag)) {
      break;
    }
  }
  in->PopLimit(limit);
  RecordEvent(position, FromTimestamp(seconds, nanos));
}

bool FlagValue(const std::string& arg, const char* name, std::string* value) {
  const std::string prefix = absl::StrCat("--", name, "=");
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

bool ParseFanoutFlag(const std::string& arg, FanoutFlags* flags, bool* ok) {
  std::string v;
  if (FlagValue(arg, "subscribers", &v)) {
    *ok = absl::SimpleAtoi(v, &flags->subscribers) && flags->subscribers > 0;
  } else if (FlagValue(arg, "channels", &v)) {
    *ok = absl::SimpleAtoi(v, &flags->channels) && flags->channels > 0;
  } else if (FlagValue(arg, "seconds", &v)) {
    *ok = absl::SimpleAtoi(v, &flags->seconds) && flags->seconds > 0;
  } else if (FlagValue(arg, "warmup_seconds", &v)) {
    *ok = absl::SimpleAtoi(v, &flags->warmup_seconds) &&
          flags->warmup_seconds >= 0;
  } else if (FlagValue(arg, "rate", &v)) {
    *ok = absl::SimpleAtod(v, &flags->rate) && flags->rate > 0;
  } else {
    return false;
  }
  return true;
}

FanoutTally TallySubscribers(
    const std::vector<std::unique_ptr<BenchSubscriber>>& subs) {
  FanoutTally t;
  t.min_events = subs.empty() ? 0 : UINT64_MAX;
  for (const auto& s : subs) {
    t.latencies_ms.insert(t.latencies_ms.end(), s->latencies_ms().begin(),
                          s->latencies_ms().end());
    t.min_events = std::min(t.min_events, s->events());
    t.max_events = std::max(t.max_events, s->events());
    t.fell_behind += s->fell_behind();
    t.out_of_order += s->out_of_order();
    if (s->status().error_code() != grpc::StatusCode::CANCELLED) ++t.errors;
  }
  std::sort(t.latencies_ms.begin(), t.latencies_ms.end());
  return t;
}

void PrintLatencies(const char* what, const FanoutTally& t,
                    double window_seconds) {
  const std::vector<float>& all = t.latencies_ms;
  std::printf(
      "%s latency over %zu deliveries in %.0f s: p50 %.2f ms, p90 %.2f ms, "
      "p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
      what, all.size(), window_seconds, Percentile(all, 0.5),
      Percentile(all, 0.9), Percentile(all, 0.99), Percentile(all, 0.999),
      all.empty() ? 0.0 : all.back());
}

std::string FindChstreamd(const std::string& flag, const char* argv0) {
  if (!flag.empty()) return flag;
  std::vector<std::string> candidates;
  if (const char* dir = getenv("RUNFILES_DIR")) {
    candidates.push_back(absl::StrCat(dir, "/chstream/server/chstreamd"));
  }
  candidates.push_back(
      absl::StrCat(argv0, ".runfiles/chstream/server/chstreamd"));
  candidates.push_back("server/chstreamd");
  candidates.push_back("bazel-bin/server/chstreamd");
  for (const std::string& c : candidates) {
    if (IsExecutable(c)) return c;
  }
  return "";
}

std::optional<ChstreamdBench> SetUpChstreamdBench(
    const std::string& chstreamd_flag, const char* argv0,
    const std::string& parent, const std::string& name, int* exit_code) {
  ChstreamdBench bench;
  bench.binary = FindChstreamd(chstreamd_flag, argv0);
  if (bench.binary.empty()) {
    std::fprintf(stderr, "chstreamd not found; pass --chstreamd=PATH\n");
    *exit_code = 2;
    return std::nullopt;
  }
  bench.dir = absl::StrCat(parent, "/chstream-", name, "-XXXXXX");
  if (mkdtemp(bench.dir.data()) == nullptr) {
    std::perror("mkdtemp");
    *exit_code = 1;
    return std::nullopt;
  }
  return bench;
}

int64_t ProcStatusKb(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    int64_t kb = 0;
    if (absl::SimpleAtoi(digits, &kb)) return kb;
  }
  return -1;
}

double StatCpuSeconds(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // Fields after "(comm)": state is field 3; utime and stime are 14, 15.
  int i = 3;
  for (; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  if (i <= 15) return -1;
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ProcCpuSeconds(pid_t pid) {
  return StatCpuSeconds(absl::StrCat("/proc/", pid, "/stat"));
}

double SelfCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

absl::StatusOr<int> PortBelowEphemeralRange() {
  int low = 32768;  // the kernel's default when the file cannot be read
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  range >> low;
  const int first = 10000;
  if (low <= first + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ephemeral port range starts at ", low, ", below ", first));
  }
  std::mt19937 rng(static_cast<uint32_t>(getpid()) ^
                   static_cast<uint32_t>(absl::ToUnixNanos(absl::Now())));
  std::uniform_int_distribution<int> pick(first, low - 1);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int port = pick(rng);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool bound =
        bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (bound) return port;
  }
  return absl::UnavailableError(absl::StrCat(
      "no free loopback port in [", first, ", ", low, ") after 100 tries"));
}

double Percentile(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(q *
                                    static_cast<double>(sorted.size() - 1))];
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // Distinct arguments and a local subchannel pool: one TCP connection per
  // channel.
  args.SetInt("chstream.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::vector<std::pair<std::string, std::string>>& env,
    const std::string& log_path, absl::Duration timeout) {
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::InternalError("cannot create " + log_path);
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fd);
  auto daemon = std::unique_ptr<Daemon>(new Daemon(pid, log_path));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      daemon->pid_ = -1;
      return absl::InternalError(absl::StrCat("chstreamd exited early (status ",
                                              status, "); see ", log_path));
    }
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("\"chstreamd serving\"") == std::string::npos) continue;
      const std::string key = "\"grpc_address\":\"";
      const size_t at = line.find(key);
      if (at == std::string::npos) continue;
      const size_t end = line.find('"', at + key.size());
      daemon->grpc_address_ =
          line.substr(at + key.size(), end - at - key.size());
      return daemon;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError("chstreamd did not start; see " +
                                     log_path);
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void BenchSubscriber::RecordResponse(const v1::SubscribeResponse& response) {
  switch (response.message_case()) {
    case v1::SubscribeResponse::kEvent:
      RecordEvent(response.event().position(),
                  FromTimestamp(response.event().received_at().seconds(),
                                response.event().received_at().nanos()));
      break;
    case v1::SubscribeResponse::kCaughtUp:
      RecordCaughtUp();
      break;
    case v1::SubscribeResponse::kFellBehind:
      RecordFellBehind();
      break;
    default:
      break;
  }
}

}  // namespace chstream::bench
